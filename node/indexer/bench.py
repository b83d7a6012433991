"""Indexer benchmark: catch-up speed over a chain of >= 200,000 custody events on SQLite and on
PostgreSQL, rebuild time, and lag behind the head under a steady writer.

Usage: scripts/bench-indexer [--journeys 10] [--singles 2000] [--postgres-url URL | --no-postgres]
Without --postgres-url a throwaway cluster is started with initdb/pg_ctl when the binaries exist.
"""

from __future__ import annotations

import argparse
import json
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


def catch_up(engine_url: str, w3: Any, manifest: Any, label: str) -> dict[str, Any]:
    engine = read_model_engine(engine_url)
    indexer = Indexer(engine, w3, manifest)
    with Bar(console=console) as bar:
        task = bar.add_task(f"catch-up on {label}", total=w3.eth.block_number)
        progress = indexer.sync(on_progress=lambda p: bar.update(task, completed=p.checkpoint))
    started = time.perf_counter()
    rebuilt = indexer.rebuild()
    rebuild_s = time.perf_counter() - started
    engine.dispose()
    return {
        "backend": label,
        "logs": progress.logs,
        "items": progress.items,
        "seconds": progress.seconds,
        "logs_per_s": progress.logs / progress.seconds,
        "items_per_s": progress.items / progress.seconds,
        "rebuild_seconds": rebuild_s,
        "rebuild_items": rebuilt.items,
    }


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
        runs = [catch_up(f"sqlite:///{tmp}/bench.db", w3, manifest, "SQLite")]
        pg: TempPostgres | None = None
        if not args.no_postgres:
            url = args.postgres_url
            if url is None:
                pg = TempPostgres().start()
                url = pg.database_url("bench")
            runs.append(catch_up(url, w3, manifest, "PostgreSQL"))
        results["catch_up"] = runs
        results["lag"] = lag_under_load(f"sqlite:///{tmp}/lag.db", w3, manifest, orgs, args.lag_seconds)
        if pg:
            pg.stop()
    table = Table(title=f"indexer catch-up, chain height {results['chain']['height']}")
    for col in ("backend", "item events", "logs", "seconds", "item events/s", "logs/s", "rebuild s"):
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
        )
    console.print(table)
    lag = results["lag"]
    console.print(
        f"lag under load ({lag['writer_tx_per_s']:.0f} custody tx/s): p50 {lag['lag_ms_p50']:.0f} ms, "
        f"p95 {lag['lag_ms_p95']:.0f} ms, max {lag['lag_ms_max']:.0f} ms; blocks behind p50 "
        f"{lag['blocks_behind_p50']}, max {lag['blocks_behind_max']}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
