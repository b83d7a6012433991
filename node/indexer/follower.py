"""Follow the chain: fetch logs over adaptive block ranges, detect reorganisations by block hash,
apply each range in one database transaction together with the checkpoint."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine, delete, insert, select, update
from web3 import Web3

from node.deploy import Manifest
from node.indexer.database import migrate
from node.indexer.events import DecodedLog, EventDecoder
from node.indexer.projector import Projector
from node.indexer.schema import STATE_TABLES, Checkpoint, IndexedBlock, JournalEntry
from node.indexer.store import Store

log = logging.getLogger("rxledger.indexer")

SUITE = ("ConsortiumRegistry", "BatchRegistry", "CustodyLedger")


class RpcError(RuntimeError):
    """The node answered a JSON-RPC call with an error."""


class DeepReorg(RuntimeError):
    """The chain reorganised below the journal window; the read models must be rebuilt."""


@dataclass
class Progress:
    blocks: int = 0
    logs: int = 0
    items: int = 0
    seconds: float = 0.0
    reorgs: int = 0
    head: int = 0
    checkpoint: int = 0
    ranges: list[int] = field(default_factory=list)


def _tbl(model: Any) -> Any:
    return model.__table__


class Indexer:
    """Writes the read models for one deployment. One indexer writes; any number of API processes read."""

    def __init__(
        self,
        engine: Engine,
        w3: Web3,
        manifest: Manifest,
        *,
        confirmations: int = 0,
        reorg_window: int = 128,
        initial_range: int = 500,
        max_range: int = 5000,
        max_logs_per_range: int = 2000,
        busy_step_interval: float = 0.05,
    ) -> None:
        self.engine = engine
        self.busy_step_interval = busy_step_interval
        self.w3 = w3
        self.manifest = manifest
        self.confirmations = confirmations
        self.reorg_window = reorg_window
        self.range = initial_range
        self.max_range = max_range
        self.max_logs_per_range = max_logs_per_range
        self.decoder = EventDecoder({name: manifest.address(name) for name in SUITE})
        self.chain_id = manifest.chain_id
        self.rpc_url = str(getattr(w3.provider, "endpoint_uri", ""))
        self._http = httpx.Client(timeout=60.0)
        self._last_beat = 0.0
        migrate(engine)

    # ---- checkpoint

    def checkpoint(self) -> tuple[int, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_tbl(Checkpoint)).where(_tbl(Checkpoint).c.id == 1)).first()
        return (int(row.block_number), str(row.block_hash)) if row else None

    def _write_checkpoint(self, store: Store, number: int, block_hash: str) -> None:
        table = _tbl(Checkpoint)
        if store.conn.execute(select(table.c.id).where(table.c.id == 1)).first() is None:
            store.conn.execute(
                insert(table).values(
                    id=1,
                    chain_id=self.chain_id,
                    block_number=number,
                    block_hash=block_hash,
                    updated_at=time.time(),
                )
            )
        else:
            store.conn.execute(
                update(table)
                .where(table.c.id == 1)
                .values(block_number=number, block_hash=block_hash, updated_at=time.time())
            )
        self._last_beat = time.monotonic()

    def heartbeat(self) -> None:
        """Mark the checkpoint as fresh while idle at the head (at most every 2 s), so that /health
        can tell a live indexer from a stopped one."""
        if time.monotonic() - self._last_beat < 2.0 or self.checkpoint() is None:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(_tbl(Checkpoint)).where(_tbl(Checkpoint).c.id == 1).values(updated_at=time.time())
            )
        self._last_beat = time.monotonic()

    # ---- chain access

    # Plain JSON-RPC for the two bulk reads: web3's result formatters cost more than the decoding
    # itself (TOOLCHAIN-NOTES: 30-42k events/s this way against ~3k/s through web3).

    def _rpc(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        response = self._http.post(self.rpc_url, json=payload)
        response.raise_for_status()
        answers = sorted(response.json(), key=lambda a: a["id"])
        for a in answers:
            if "error" in a:
                raise RpcError(a["error"])
        return [a["result"] for a in answers]

    def _headers(self, numbers: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Block headers by number, fetched in JSON-RPC batches."""
        out: dict[int, dict[str, Any]] = {}
        numbers = sorted(set(numbers))
        for i in range(0, len(numbers), 200):
            chunk = numbers[i : i + 200]
            blocks = self._rpc([("eth_getBlockByNumber", [hex(n), False]) for n in chunk])
            for n, b in zip(chunk, blocks, strict=True):
                if b is None:
                    raise RpcError({"message": f"block {n} not found"})
                out[n] = {"hash": b["hash"], "parent": b["parentHash"], "timestamp": int(b["timestamp"], 16)}
        return out

    def _get_logs(self, start: int, end: int) -> list[dict[str, Any]]:
        params = {"fromBlock": hex(start), "toBlock": hex(end), "address": self.decoder.addresses}
        result: list[dict[str, Any]] = self._rpc([("eth_getLogs", [params])])[0]
        return result

    # ---- reorgs

    def _check_reorg(self, progress: Progress, head: int) -> None:
        cp = self.checkpoint()
        if cp is None:
            return
        number, known_hash = cp
        if number <= head:
            current = self.w3.eth.get_block(number)["hash"].to_0x_hex()  # type: ignore[union-attr]
            if current == known_hash:
                return
        # else the chain is shorter than what we applied: a node restarted from an older state
        with self.engine.begin() as conn:
            blocks = conn.execute(
                select(_tbl(IndexedBlock)).order_by(_tbl(IndexedBlock).c.number.desc())
            ).all()
            fork: tuple[int, str] | None = None
            for b in blocks:
                if int(b.number) > head:
                    continue
                chain_block = self.w3.eth.get_block(int(b.number))
                if chain_block["hash"].to_0x_hex() == b.hash:  # type: ignore[union-attr]
                    fork = (int(b.number), str(b.hash))
                    break
            if fork is None:
                raise DeepReorg(f"the chain no longer has any block the indexer knows past {number}; rebuild")
            store = Store(conn)
            undone = store.rollback_after(fork[0])
            conn.execute(delete(_tbl(IndexedBlock)).where(_tbl(IndexedBlock).c.number > fork[0]))
            self._write_checkpoint(store, *fork)
        progress.reorgs += 1
        log.warning("reorg: rolled back to block %s (%s rows undone)", fork[0], undone)

    # ---- one step

    def step(self, progress: Progress | None = None) -> int:
        """Apply the next range of blocks (up to the safe head). Returns the number of blocks applied."""
        progress = progress or Progress()
        head = self.w3.eth.block_number  # one read per step, for the reorg check and the range
        self._check_reorg(progress, head)
        safe = head - self.confirmations
        cp = self.checkpoint()
        start = cp[0] + 1 if cp else self.manifest.deploy_block
        progress.head = head
        if start > safe:
            return 0
        end = min(safe, start + self.range - 1)
        try:
            raw = self._get_logs(start, end)
        except Exception as exc:  # a node's range or result-size limit: halve and retry
            if end == start:
                raise
            self.range = max(1, (end - start + 1) // 2)
            log.info("getLogs %s-%s failed (%s); range now %s", start, end, exc, self.range)
            return 0
        if len(raw) > self.max_logs_per_range and end > start:
            self.range = max(1, (end - start + 1) // 2)
            end = start + self.range - 1
            raw = [x for x in raw if int(x["blockNumber"], 16) <= end]
        elif len(raw) < self.max_logs_per_range // 4:
            self.range = min(self.max_range, self.range * 2)
        decoded = [d for d in (self.decoder.decode(x) for x in raw) if d is not None]
        decoded.sort(key=lambda d: (d.block_number, d.log_index))
        window_floor = head - self.reorg_window
        numbers = {d.block_number for d in decoded} | {end}
        headers = self._headers(sorted(numbers))
        for d in decoded:
            if headers[d.block_number]["hash"] != d.block_hash:
                log.info("block %s changed while reading; retrying", d.block_number)
                return 0
        items = self._apply(decoded, headers, end, window_floor)
        progress.blocks += end - start + 1
        progress.logs += len(decoded)
        progress.items += items
        progress.checkpoint = end
        progress.ranges.append(end - start + 1)
        return end - start + 1

    def _apply(
        self, decoded: Sequence[DecodedLog], headers: dict[int, dict[str, Any]], end: int, window_floor: int
    ) -> int:
        items = 0
        with self.engine.begin() as conn:
            store = Store(conn)
            projector = Projector(store)
            current_block = -1
            for d in decoded:
                if d.block_number != current_block:
                    current_block = d.block_number
                    store.journal_block = current_block if current_block >= window_floor else None
                projector.apply(d, headers[d.block_number]["timestamp"])
                for k in ("keys", "containerKeys"):
                    items += len(d.args.get(k, ()))
            store.flush_all()
            recent = [n for n in headers if n >= window_floor]
            if recent:
                conn.execute(delete(_tbl(IndexedBlock)).where(_tbl(IndexedBlock).c.number.in_(recent)))
                conn.execute(
                    insert(_tbl(IndexedBlock)),
                    [
                        {
                            "number": n,
                            "hash": headers[n]["hash"],
                            "parent_hash": headers[n]["parent"],
                            "timestamp": headers[n]["timestamp"],
                        }
                        for n in recent
                    ],
                )
            conn.execute(delete(_tbl(IndexedBlock)).where(_tbl(IndexedBlock).c.number < window_floor))
            store.prune_journal(window_floor)
            self._write_checkpoint(store, end, headers[end]["hash"])
        return items

    # ---- loops

    def sync(
        self, until: int | None = None, on_progress: Callable[[Progress], None] | None = None
    ) -> Progress:
        """Catch up to the safe head (or `until`) and return what was done."""
        progress = Progress()
        started = time.perf_counter()
        while True:
            cp = self.checkpoint()
            if until is not None and cp is not None and cp[0] >= until:
                break
            if self.step(progress) == 0:
                cp = self.checkpoint()
                if cp is not None and cp[0] >= self.w3.eth.block_number - self.confirmations:
                    break
            if on_progress:
                on_progress(progress)
        progress.seconds = time.perf_counter() - started
        return progress

    def run(
        self, stop: threading.Event, poll_interval: float = 0.05, wake: threading.Event | None = None
    ) -> None:
        """Follow the head until `stop` is set. Polls `eth_blockNumber` every `poll_interval` when
        idle (one cheap call); `wake`, when given, cuts the wait short (a writer in the same process
        that just saw its transaction mined)."""
        progress = Progress()
        while not stop.is_set():
            started = time.monotonic()
            try:
                applied = self.step(progress)
                if applied == 0:
                    # inside the try: the heartbeat writes to the database, and a database that
                    # went down since the step must not end the loop (it ended the indexer thread)
                    self.heartbeat()
            except DeepReorg:
                raise
            except Exception:  # node restarting, database busy or down: retry after a pause
                log.exception("indexer step failed; retrying")
                stop.wait(min(5.0, poll_interval * 10))
                continue
            if applied == 0:
                if wake is None:
                    stop.wait(poll_interval)
                else:
                    wake.wait(poll_interval)
                    wake.clear()
            elif applied < self.range and self.busy_step_interval:
                # Under load every block wakes the indexer (one transaction a block on an automining
                # devnet): a step per block costs its fixed calls and commit each time. A short
                # floor between steps lets one step take the blocks that arrived meanwhile.
                stop.wait(max(0.0, started + self.busy_step_interval - time.monotonic()))

    def rebuild(self, on_progress: Callable[[Progress], None] | None = None) -> Progress:
        """Drop the read models and replay the chain from the deploy block. Tables are dropped and
        recreated (not just emptied) so that generated ids start again from 1 on every backend."""
        with self.engine.begin() as conn:
            for model in (*STATE_TABLES, Checkpoint, IndexedBlock, JournalEntry):
                _tbl(model).drop(conn, checkfirst=True)
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        migrate(self.engine)
        return self.sync(on_progress=on_progress)
