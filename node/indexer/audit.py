"""`rxledger audit consistency`: compare read-model rows with the contracts' own views at the
indexed block; any divergence is printed and makes the command fail."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select
from web3 import Web3
from web3.contract import Contract
from web3.types import BlockIdentifier

from node.indexer.custody import resolve
from node.indexer.schema import Batch, Checkpoint, Container, Unit, table

ZERO32 = "0x" + "00" * 32


@dataclass
class AuditReport:
    block: int
    checked: dict[str, int] = field(default_factory=lambda: {"units": 0, "containers": 0, "batches": 0})
    divergences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences


def _rows(engine: Engine, model: Any, sample: int | None) -> Iterator[Mapping[str, Any]]:
    t = table(model)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(t)).scalar_one()
        query = select(t)
        if sample is not None and total > sample:
            # A random sample by offset windows: cheap on both SQLite and Postgres.
            offsets = sorted(random.sample(range(total), sample))
            for off in offsets:
                row = conn.execute(
                    query.order_by(t.primary_key.columns.values()[0]).offset(off).limit(1)
                ).first()
                if row:
                    yield dict(row._mapping)
            return
        for row in conn.execute(query):
            yield dict(row._mapping)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _state_block(w3: Web3, contracts: Mapping[str, Contract], number: int) -> BlockIdentifier | None:
    """A block identifier whose state of the suite equals the state at `number`: `number` itself when
    the node serves it, else "latest" when no event of the suite was emitted since (every state change
    of the contracts emits one), else None."""
    try:
        contracts["CustodyLedger"].functions.shipmentCount().call(block_identifier=number)
        return number
    except Exception:
        pass
    head = w3.eth.block_number
    logs = w3.eth.get_logs(
        {"fromBlock": number + 1, "toBlock": head, "address": [c.address for c in contracts.values()]}
    )
    return "latest" if not logs and w3.eth.block_number == head else None


def audit(
    engine: Engine, w3: Web3, contracts: Mapping[str, Contract], *, sample: int | None = 200
) -> AuditReport:
    checkpoint_table = table(Checkpoint)
    with engine.connect() as conn:
        cp = conn.execute(select(checkpoint_table)).first()
    if cp is None:
        report = AuditReport(block=-1)
        report.divergences.append("the indexer has no checkpoint yet")
        return report
    report = AuditReport(block=int(cp.block_number))
    block = _state_block(w3, contracts, int(cp.block_number))
    if block is None:
        report.divergences.append(
            f"the node serves no state at the indexed block {cp.block_number} (history pruned) and the suite "
            "changed since; audit against an archive node or when the indexer is at the head"
        )
        return report
    custody: Any = contracts["CustodyLedger"]
    batches: Any = contracts["BatchRegistry"]
    with engine.connect() as conn:
        idx_of = {row.batch_id: row.idx for row in conn.execute(select(table(Batch)))}  # type: ignore[attr-defined]

        for row in _rows(engine, Batch, sample):
            report.checked["batches"] += 1
            core = batches.functions.batchCore(bytes.fromhex(row["batch_id"][2:])).call(
                block_identifier=block
            )
            suspect = custody.functions.batchSuspect(bytes.fromhex(row["batch_id"][2:])).call(
                block_identifier=block
            )
            expected = {
                "idx": core[1],
                "status": core[2],
                "manufacturer": core[3],
                "sponsor": core[4],
                "suspect": suspect,
            }
            for name, value in expected.items():
                if row[name] != value:
                    report.divergences.append(f"batch {row['batch_id']}: {name} db={row[name]} chain={value}")

        for row in _rows(engine, Unit, sample):
            report.checked["units"] += 1
            v = custody.functions.unit(bytes.fromhex(row["key"][2:])).call(block_identifier=block)
            c = resolve(conn, row)
            expected = {
                "exists": True,
                "state": row["state"],
                "suspect": row["suspect"],
                "batchIndex": idx_of.get(row["batch_id"]),
                "holder": c.holder,
                "packed": c.packed,
                "parentKey": c.parent_key or ZERO32,
                "shipmentId": c.shipment_id or ZERO32,
                "decommissionedAt": row["decommissioned_at"] or 0,
            }
            actual = dict(
                zip(
                    (
                        "exists",
                        "state",
                        "suspect",
                        "batchSuspect",
                        "batchIndex",
                        "holder",
                        "packed",
                        "parentKey",
                        "shipmentId",
                        "decommissionedAt",
                    ),
                    v,
                    strict=True,
                )
            )
            actual["parentKey"] = _hex(actual["parentKey"])
            actual["shipmentId"] = _hex(actual["shipmentId"])
            for name, value in expected.items():
                if actual[name] != value:
                    report.divergences.append(f"unit {row['key']}: {name} db={value} chain={actual[name]}")

        for row in _rows(engine, Container, sample):
            report.checked["containers"] += 1
            v = custody.functions.container(bytes.fromhex(row["key"][2:])).call(block_identifier=block)
            c = resolve(conn, row)
            actual = dict(
                zip(
                    ("exists", "state", "height", "holder", "packed", "parentKey", "shipmentId"),
                    v[:7],
                    strict=True,
                )
            )
            actual["parentKey"] = _hex(actual["parentKey"])
            actual["shipmentId"] = _hex(actual["shipmentId"])
            expected = {
                "exists": True,
                "state": row["state"],
                "height": row["height"],
                "holder": c.holder,
                "packed": c.packed,
                "parentKey": c.parent_key or ZERO32,
                "shipmentId": c.shipment_id or ZERO32,
            }
            for name, value in expected.items():
                if actual[name] != value:
                    report.divergences.append(
                        f"container {row['key']}: {name} db={value} chain={actual[name]}"
                    )
    return report


__all__ = ["AuditReport", "Web3", "audit"]
