"""Indexer benchmark: catch-up speed over a chain of >= 200,000 custody events on SQLite and on
PostgreSQL, rebuild time, and lag behind the head under a steady writer.

Usage: scripts/bench-indexer [--journeys 10] [--singles 2000] [--postgres-url URL | --no-postgres]
Without --postgres-url a throwaway cluster is started with initdb/pg_ctl when the binaries exist.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress as Bar
from rich.table import Table

from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import deploy_suite, load_contracts
from node.devnet import Devnet
from node.indexer.database import read_model_engine
from node.indexer.follower import Indexer
from node.indexer.pgtemp import TempPostgres
from node.ledger.consortium import onboard
from node.ledger.constants import UnitState
from node.ledger.identifiers import unit_key
from node.ledger.journey import JOURNEY_GTIN, released_batch, run_journey
from node.procmem import peak_rss_mib, rss_mib

console = Console()


def build_chain(orgs: dict[str, Any], journeys: int, singles: int) -> dict[str, int]:
    """Standard journeys (10,000 units each, ~20,400 item custody events) plus single-pack
    dispenses (one transaction and one event each, as at a pharmacy counter)."""
    pharmacy, cmo, sponsor = (
        orgs["City Pharmacy"],
        orgs["Contract Manufacturing GmbH"],
        orgs["Sponsor Pharma AG"],
    )
    with Bar(console=console) as bar:
        task = bar.add_task("journeys", total=journeys)
        for j in range(journeys):
            run_journey(orgs, lot=f"B-{j:04d}", sscc_base=1000 * (j + 1))
            bar.advance(task)
        bid = released_batch(cmo, sponsor, "SINGLES")
        keys = [unit_key(JOURNEY_GTIN, f"S{i:07d}") for i in range(singles)]
        task = bar.add_task("single-pack transactions", total=singles)
        for i in range(0, singles, 500):
            cmo.client.transact("CustodyLedger", "commission", bid, [], keys[i : i + 500], bytes(32))
        sid = b"SINGLES".ljust(32, b"\0")
        cmo.client.transact("CustodyLedger", "ship", sid, pharmacy.id, keys, bytes(32), bytes(32))
        pharmacy.client.transact("CustodyLedger", "receiveShipment", sid, keys, bytes(32))
        sender = pharmacy.client.sender
        fn = pharmacy.client.contracts["CustodyLedger"].functions
        gas = 120_000
        pending = []
        for k in keys:
            tx = {
                "to": fn.decommission([k], UnitState.DISPENSED, bytes(32)).address,
                "data": fn.decommission([k], UnitState.DISPENSED, bytes(32))._encode_transaction_data(),
            }
            pending.append(sender.submit(tx, gas=gas))
            if len(pending) >= 200:  # bounded in-flight (TOOLCHAIN-NOTES: automine stalls on bursts)
                for h in pending:
                    sender.wait(h)
                bar.advance(task, len(pending))
                pending = []
        for h in pending:
            sender.wait(h)
        bar.advance(task, len(pending))
    return {"journeys": journeys, "singles": singles}


def catch_up(engine_url: str, rpc_url: str, manifest: Any, label: str) -> dict[str, Any]:
    """Catch up from empty read models, then rebuild them, in a process of its own: its peak memory
    (VmHWM) is the indexer's alone. Baseline: the same process idle after start-up and migrations."""
    ctx = multiprocessing.get_context("spawn")
    queue: Any = ctx.Queue()
    child = ctx.Process(target=_catch_up_child, args=(engine_url, rpc_url, manifest, label, queue))
    child.start()
    try:
        result: dict[str, Any] = queue.get(timeout=3600)
    finally:
        child.join(timeout=60)
    if "error" in result:
        raise RuntimeError(f"catch-up on {label} failed: {result['error']}")
    return result


def _catch_up_child(engine_url: str, rpc_url: str, manifest: Any, label: str, queue: Any) -> None:
    try:
        engine = read_model_engine(engine_url)
        w3 = make_web3(rpc_url)
        indexer = Indexer(engine, w3, manifest)
        idle = rss_mib(os.getpid()) or 0.0
        with Bar(console=console) as bar:
            task = bar.add_task(f"catch-up on {label}", total=w3.eth.block_number)
            progress = indexer.sync(on_progress=lambda p: bar.update(task, completed=p.checkpoint))
        started = time.perf_counter()
        rebuilt = indexer.rebuild()
        rebuild_s = time.perf_counter() - started
        engine.dispose()
        queue.put(
            {
                "backend": label,
                "logs": progress.logs,
                "items": progress.items,
                "seconds": progress.seconds,
                "logs_per_s": progress.logs / progress.seconds,
                "items_per_s": progress.items / progress.seconds,
                "rebuild_seconds": rebuild_s,
                "rebuild_items": rebuilt.items,
                "idle_rss_mib": idle,
                "peak_rss_mib": peak_rss_mib(os.getpid()) or 0.0,
            }
        )
    except Exception as exc:  # the parent reports it
        queue.put({"error": repr(exc)})


def read_only(w3: Any, manifest: Any, tmp: Path) -> dict[str, Any]:
    """The catch-up's baseline: the same reads (logs in adaptive ranges, decoding, block headers)
    with no read model written, i.e. what the node and the decoding cost before the database."""
    indexer = Indexer(read_model_engine(f"sqlite:///{tmp}/read-only.db"), w3, manifest)
    head = w3.eth.block_number
    start, logs, items = manifest.deploy_block, 0, 0
    t0 = time.perf_counter()
    with Bar(console=console) as bar:
        task = bar.add_task("read only (baseline)", total=head)
        while start <= head:
            end = min(head, start + indexer.range - 1)
            raw = indexer._get_logs(start, end)
            if len(raw) < indexer.max_logs_per_range // 4:
                indexer.range = min(indexer.max_range, indexer.range * 2)
            decoded = [d for d in (indexer.decoder.decode(x) for x in raw) if d is not None]
            indexer._headers(sorted({d.block_number for d in decoded} | {end}))
            logs += len(decoded)
            items += sum(len(d.args.get(k, ())) for d in decoded for k in ("keys", "containerKeys"))
            start = end + 1
            bar.update(task, completed=end)
    seconds = time.perf_counter() - t0
    indexer.engine.dispose()
    return {"logs": logs, "items": items, "seconds": seconds, "items_per_s": items / seconds}


def lag_under_load(
    engine_url: str, w3: Any, manifest: Any, orgs: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """A writer ships and receives loose units continuously; the indexer follows; we sample how many
    blocks and milliseconds each mined block waits until the indexer has committed it."""
    engine = read_model_engine(engine_url)
    indexer = Indexer(engine, w3, manifest)
    indexer.sync()
    cmo, tpl, sponsor = (
        orgs["Contract Manufacturing GmbH"],
        orgs["Alpine Logistics 3PL"],
        orgs["Sponsor Pharma AG"],
    )
    bid = released_batch(cmo, sponsor, "LAG")
    keys = [unit_key(JOURNEY_GTIN, f"LAG{i:06d}") for i in range(4000)]
    for i in range(0, len(keys), 500):
        cmo.client.transact("CustodyLedger", "commission", bid, [], keys[i : i + 500], bytes(32))
    indexer.sync()
    mined: dict[int, float] = {}
    indexed: dict[int, float] = {}
    blocks_behind: list[int] = []
    stop = threading.Event()

    def follow() -> None:
        while not stop.is_set():
            if indexer.step() == 0:
                stop.wait(0.05)
            cp = indexer.checkpoint()
            if cp:
                now = time.perf_counter()
                for n in list(mined):
                    if n <= cp[0] and n not in indexed:
                        indexed[n] = now
                blocks_behind.append(w3.eth.block_number - cp[0])

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline and i + 10 <= len(keys):
        sid = f"LAG-{i}".encode().ljust(32, b"\0")
        r = cmo.client.transact("CustodyLedger", "ship", sid, tpl.id, keys[i : i + 10], bytes(32), bytes(32))
        mined[int(r["blockNumber"])] = time.perf_counter()
        r = tpl.client.transact("CustodyLedger", "receiveShipment", sid, keys[i : i + 10], bytes(32))
        mined[int(r["blockNumber"])] = time.perf_counter()
        i += 10
    time.sleep(1.0)
    stop.set()
    thread.join()
    engine.dispose()
    lags = sorted((indexed[n] - t) * 1000 for n, t in mined.items() if n in indexed)
    return {
        "writer_tx": len(mined),
        "writer_tx_per_s": len(mined) / seconds,
        "lag_ms_p50": statistics.median(lags),
        "lag_ms_p95": lags[int(len(lags) * 0.95) - 1],
        "lag_ms_max": lags[-1],
        "blocks_behind_p50": statistics.median(blocks_behind),
        "blocks_behind_max": max(blocks_behind),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--journeys", type=int, default=10)
    parser.add_argument("--singles", type=int, default=2000)
    parser.add_argument("--lag-seconds", type=float, default=15.0)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with Devnet() as devnet, tempfile.TemporaryDirectory() as tmp:
        w3 = make_web3(devnet.rpc_url)
        admin = dev_accounts()[0]
        manifest = deploy_suite(w3, admin, manifest_dir=Path(tmp))
        contracts = load_contracts(w3, manifest)
        orgs = onboard(w3, contracts, admin, seed="bench")
        orgs["Sponsor Pharma AG"].client.transact("BatchRegistry", "registerProduct", int(JOURNEY_GTIN))
        orgs["Sponsor Pharma AG"].client.transact(
            "BatchRegistry",
            "authorizeManufacturer",
            int(JOURNEY_GTIN),
            orgs["Contract Manufacturing GmbH"].id,
        )
        t0 = time.perf_counter()
        results["chain"] = build_chain(orgs, args.journeys, args.singles)
        results["chain"]["build_seconds"] = time.perf_counter() - t0
        results["chain"]["height"] = w3.eth.block_number
        results["read_only"] = read_only(w3, manifest, Path(tmp))
        runs = [catch_up(f"sqlite:///{tmp}/bench.db", devnet.rpc_url, manifest, "SQLite")]
        pg: TempPostgres | None = None
        if not args.no_postgres:
            url = args.postgres_url
            if url is None:
                pg = TempPostgres().start()
                url = pg.database_url("bench")
            runs.append(catch_up(url, devnet.rpc_url, manifest, "PostgreSQL"))
        results["catch_up"] = runs
        results["lag"] = lag_under_load(f"sqlite:///{tmp}/lag.db", w3, manifest, orgs, args.lag_seconds)
        if pg:
            pg.stop()
    table = Table(title=f"indexer catch-up, chain height {results['chain']['height']}")
    for col in (
        "backend",
        "item events",
        "logs",
        "seconds",
        "item events/s",
        "logs/s",
        "rebuild s",
        "memory MiB idle -> peak",
    ):
        table.add_column(col, justify="right")
    for r in runs:
        table.add_row(
            r["backend"],
            f"{r['items']:,}",
            f"{r['logs']:,}",
            f"{r['seconds']:.1f}",
            f"{r['items_per_s']:,.0f}",
            f"{r['logs_per_s']:,.0f}",
            f"{r['rebuild_seconds']:.1f}",
            f"{r['idle_rss_mib']:.0f} -> {r['peak_rss_mib']:.0f}",
        )
    ro = results["read_only"]
    table.add_row("read only (baseline)", f"{ro['items']:,}", f"{ro['logs']:,}", f"{ro['seconds']:.1f}",
                  f"{ro['items_per_s']:,.0f}", "", "", "")  # fmt: skip
    console.print(table)
    lag = results["lag"]
    console.print(
        f"lag under load ({lag['writer_tx_per_s']:.0f} custody tx/s): p50 {lag['lag_ms_p50']:.0f} ms, "
        f"p95 {lag['lag_ms_p95']:.0f} ms, max {lag['lag_ms_max']:.0f} ms; blocks behind p50 "
        f"{lag['blocks_behind_p50']}, max {lag['blocks_behind_max']}"
    )
    if args.json:
        args.json.write_text(json.dumps({"raw": results, "figures": figures(results)}, indent=2) + "\n")


def figures(results: dict[str, Any]) -> list[dict[str, Any]]:
    """bench/results.json entries: catch-up speed against the read-only pass over the same chain, and
    the indexer process's peak memory against the same process idle."""
    base = results["read_only"]["items_per_s"]
    out: list[dict[str, Any]] = []
    for r in results["catch_up"]:
        out.append(
            {
                "name": f"indexer catch-up on {r['backend']} ({r['items']:,} item events)",
                "value": round(r["items_per_s"], 1),
                "unit": "item events/s",
                "baseline": round(base, 1),
                "baseline_name": "the same reads and decoding, nothing written (read only)",
                "ratio": round(r["items_per_s"] / base, 4),
            }
        )
        out.append(
            {
                "name": f"indexer peak memory, catch-up and rebuild on {r['backend']}",
                "value": round(r["peak_rss_mib"], 1),
                "unit": "MiB",
                "baseline": round(r["idle_rss_mib"], 1),
                "baseline_name": "the same process idle after start-up and migrations",
                "ratio": round(r["peak_rss_mib"] / r["idle_rss_mib"], 3),
            }
        )
    return out


if __name__ == "__main__":
    main()
