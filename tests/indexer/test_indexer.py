"""The indexer against a real devnet and real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from node.indexer.audit import audit
from node.indexer.follower import Indexer
from node.indexer.projector import Projector
from node.indexer.schema import STATE_TABLES, Batch, Checkpoint, CustodyEvent, Shipment, Unit, table
from node.ledger.constants import BatchStatus, UnitState
from tests.indexer.conftest import Chain
from tests.indexer.scenario import busy_day


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model row, ordered by primary key."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for model in STATE_TABLES:
            t = table(model)
            rows = conn.execute(select(t).order_by(*t.primary_key.columns)).all()
            out[t.name] = [tuple(r) for r in rows]
    return out


def checkpoint_block(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(table(Checkpoint).c.block_number)).scalar_one())  # type: ignore[attr-defined]


def test_sync_matches_the_contracts(chain: Chain, engine: Engine) -> None:
    snap = chain.devnet.snapshot()
    try:
        busy_day(chain.orgs, "SYNC")
        # Small limits exercise the adaptive range: growing when sparse, halving past 8 logs.
        indexer = Indexer(engine, chain.w3, chain.manifest, initial_range=3, max_logs_per_range=8)
        progress = indexer.sync()
        assert min(progress.ranges) < max(progress.ranges)
        assert checkpoint_block(engine) == chain.w3.eth.block_number
        assert progress.logs > 40 and progress.items > 60
        report = audit(engine, chain.w3, chain.deployment.contracts, sample=None)
        assert report.ok, report.divergences
        assert report.checked["units"] == 30 and report.checked["containers"] == 5
        with engine.connect() as conn:
            recalled = conn.execute(select(table(Batch)).where(table(Batch).c.lot == "SYNC-B")).one()  # type: ignore[attr-defined]
            assert recalled.status == BatchStatus.RECALLED
            states = dict(conn.execute(select(table(Unit).c.state, table(Unit).c.key)).all())  # type: ignore[attr-defined]
            assert sorted(states).count(UnitState.DISPENSED) == 1  # one state value per key: dict by state
            shipments = {r.shipment_id: r for r in conn.execute(select(table(Shipment)))}  # type: ignore[attr-defined]
            assert sorted((s.received, s.rejected, s.missing, s.closed) for s in shipments.values()) == [
                (1, 0, 0, True),
                (1, 0, 1, True),
                (1, 1, 0, True),
            ]
            events = conn.execute(select(table(CustodyEvent))).all()  # type: ignore[attr-defined]
            assert len({(e.block_number, e.log_index) for e in events}) == len(events)
            assert {e.action for e in events} >= {
                "commissioned",
                "packed",
                "unpacked",
                "emptied",
                "shipped",
                "received",
                "rejected",
                "reported_missing",
                "decommissioned",
                "decommission_undone",
                "suspect_status",
                "batch_suspect_status",
            }
    finally:
        chain.devnet.revert(snap)


def test_incremental_equals_rebuild(chain: Chain, engine: Engine) -> None:
    snap = chain.devnet.snapshot()
    try:
        indexer = Indexer(engine, chain.w3, chain.manifest, initial_range=2, reorg_window=10_000)
        for tag in ("INC1", "INC2", "INC3"):
            busy_day(chain.orgs, tag)
            indexer.sync()  # journaled, tip-following path
        incremental = dump(engine)
        indexer.rebuild()  # bulk path, no journal
        assert dump(engine) == incremental
        assert audit(engine, chain.w3, chain.deployment.contracts, sample=None).ok
    finally:
        chain.devnet.revert(snap)


def test_reorg_rolls_back_and_follows_the_new_chain(chain: Chain, engine: Engine) -> None:
    base = chain.devnet.snapshot()
    try:
        indexer = Indexer(engine, chain.w3, chain.manifest)
        busy_day(chain.orgs, "KEEP")
        indexer.sync()
        fork = chain.devnet.snapshot()
        busy_day(chain.orgs, "LOST")  # these blocks will be orphaned
        indexer.sync()
        orphaned_head = chain.w3.eth.block_number
        chain.devnet.revert(fork)
        busy_day(chain.orgs, "WIN")  # a different history
        chain.devnet.mine(3)  # the new chain is longer
        assert chain.w3.eth.block_number > orphaned_head
        progress = indexer.sync()
        assert progress.reorgs == 1
        with engine.connect() as conn:
            lots = {r.lot for r in conn.execute(select(table(Batch)))}  # type: ignore[attr-defined]
        assert {"KEEP-A", "WIN-A"} <= lots and not {"LOST-A", "LOST-B"} & lots
        assert audit(engine, chain.w3, chain.deployment.contracts, sample=None).ok
        after_reorg = dump(engine)
        indexer.rebuild()
        assert dump(engine) == after_reorg
    finally:
        chain.devnet.revert(base)


def test_crash_mid_range_resumes_without_loss_or_duplication(
    chain: Chain, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = chain.devnet.snapshot()
    try:
        busy_day(chain.orgs, "CRASH")
        indexer = Indexer(engine, chain.w3, chain.manifest, initial_range=10_000)
        calls = {"n": 0}
        real_apply = Projector.apply

        def failing_apply(self: Projector, log: Any, ts: int) -> bool:
            calls["n"] += 1
            if calls["n"] == 25:
                raise RuntimeError("power cut")
            return real_apply(self, log, ts)

        monkeypatch.setattr(Projector, "apply", failing_apply)
        with pytest.raises(RuntimeError, match="power cut"):
            indexer.sync()
        monkeypatch.setattr(Projector, "apply", real_apply)
        before = checkpoint_block_or_none(engine)
        # The failed range left nothing behind: no checkpoint beyond what was committed.
        assert before is None or before < chain.w3.eth.block_number
        Indexer(engine, chain.w3, chain.manifest).sync()
        resumed = dump(engine)
        assert audit(engine, chain.w3, chain.deployment.contracts, sample=None).ok
        Indexer(engine, chain.w3, chain.manifest).rebuild()
        assert dump(engine) == resumed
    finally:
        chain.devnet.revert(snap)


def checkpoint_block_or_none(engine: Engine) -> int | None:
    with engine.connect() as conn:
        value = conn.execute(select(table(Checkpoint).c.block_number)).scalar()  # type: ignore[attr-defined]
    return None if value is None else int(value)


def test_confirmations_hold_back_the_tip(chain: Chain, engine: Engine) -> None:
    snap = chain.devnet.snapshot()
    try:
        busy_day(chain.orgs, "CONF")
        indexer = Indexer(engine, chain.w3, chain.manifest, confirmations=3)
        indexer.sync()
        assert checkpoint_block(engine) == chain.w3.eth.block_number - 3
        chain.devnet.mine(3)
        indexer.sync()
        assert audit(engine, chain.w3, chain.deployment.contracts, sample=None).ok
    finally:
        chain.devnet.revert(snap)


def test_anvil_reorg_of_the_last_blocks(chain: Chain, engine: Engine) -> None:
    """anvil_reorg replaces the last blocks (dropping their transactions): the indexer undoes them."""
    snap = chain.devnet.snapshot()
    try:
        busy_day(chain.orgs, "BASE")
        indexer = Indexer(engine, chain.w3, chain.manifest)
        indexer.sync()
        before = dump(engine)
        pharmacy = chain.orgs["City Pharmacy"]
        with engine.connect() as conn:
            loose = (
                conn.execute(
                    select(table(Unit).c.key).where(
                        table(Unit).c.holder == pharmacy.id, table(Unit).c.state == 1
                    )
                )
                .scalars()
                .first()
            )
        assert loose is not None
        pharmacy.client.transact("CustodyLedger", "decommission", [bytes.fromhex(loose[2:])], 2, bytes(32))
        indexer.sync()
        assert dump(engine) != before
        chain.devnet.rpc("anvil_reorg", [1, []])  # the block with the dispense is replaced by an empty one
        progress = indexer.sync()
        assert progress.reorgs == 1
        assert dump(engine) == before
        assert audit(engine, chain.w3, chain.deployment.contracts, sample=None).ok
    finally:
        chain.devnet.revert(snap)
