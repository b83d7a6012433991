"""Write path at load: single-pack dispenses from many pharmacy clients at once, sustained, next to
the chain's own capacity for the same calls, measured in the same run on the same devnet.

- baseline (the layer below): the same single-pack `decommission` transactions, pre-signed with the
  pharmacies' keys and sent pipelined straight to the node in JSON-RPC batches, counted when mined;
- the API: --clients concurrent clients of --pharmacies pharmacies, each posting single-pack
  `POST /v1/decommission` (answer 202, no waiting) one after the other for --seconds; requests/s
  accepted, and request -> indexed latency of every operation (its `finished_at`, which the
  submitter sets once the indexer has the block);
- after the run: operations accepted = packs dispensed on chain (contract views), 0 lost, and one
  UnitsDecommissioned per pack in the chain's logs (0 duplicated);
- the node's own slowdown with height: empty blocks mined per second (`anvil_mine`) at the start and
  at the end of the run;
- peak memory (VmHWM) of the API process (submitter and indexer in it).

Usage: scripts/bench-dispense [--seconds 60] [--clients 64] [--pharmacies 8] [--block-time S]
                              [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import requests
from rich.table import Table
from sqlalchemy import select
from sqlmodel import Session, col

from api.admin.bootstrap import ensure_admin
from api.client import RxClient
from api.database import api_engine
from api.models import Operation
from api.runtime import Runtime
from bench.writes import (
    CODE_ROOT,
    CREDENTIAL,
    ApiProcess,
    _env,
    _pct,
    _released,
    _users,
    bench_settings,
    console,
)
from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import deploy_suite, load_contracts
from node.devnet import Devnet, free_port
from node.ledger.client import LedgerClient
from node.ledger.constants import UnitState
from node.ledger.identifiers import unit_key, with_check_digit
from node.ledger.journey import JOURNEY_GTIN
from node.procmem import peak_rss_mib, rss_mib

CHUNK = 1000  # packs per direct commissioning, ship and receive transaction in the set-up
SEND_BATCH = 250  # pre-signed transactions per JSON-RPC batch in the baseline
MAX_PENDING = 1000  # the baseline's transactions in flight at most


def _rpc(url: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    answers = requests.post(url, json=cast(Any, payload), timeout=120).json()
    return [a.get("result", a.get("error")) for a in sorted(answers, key=lambda a: a["id"])]


def _mine_rate(url: str, blocks: int = 500) -> tuple[int, float]:
    """(height before, empty blocks mined per second) with `anvil_mine`."""
    height = int(_rpc(url, [("eth_blockNumber", [])])[0], 16)
    t0 = time.perf_counter()
    _rpc(url, [("anvil_mine", [hex(blocks)])])
    return height, blocks / (time.perf_counter() - t0)


def _pharmacies(admin: RxClient, n: int) -> list[tuple[dict[str, Any], str]]:
    """n pharmacies, each with an operator: (organisation, operator token)."""
    out = []
    for i in range(n):
        gln = with_check_digit(f"40700000{i:04d}")
        admin.post("/v1/organizations", {"gln": gln, "name": f"Pharmacy {i}", "roles": ["dispenser"]})
    orgs = {o["gln"]: o for o in admin.get("/v1/organizations")}
    for i in range(n):
        org = orgs[with_check_digit(f"40700000{i:04d}")]
        body = {"username": f"pharmacy{i}.operator", "printed_name": f"p{i}", "role": "operator"}
        body["credential"] = CREDENTIAL
        token = admin.post(f"/v1/organizations/{org['id']}/users", body, wait=False)["token"]["token"]
        out.append((org, token))
    return out


def _stock(
    cmo: LedgerClient, holders: list[tuple[LedgerClient, int]], batch: bytes, serials: list[list[str]]
) -> None:
    """Commission loose packs directly and move each pharmacy's share to it (ship + receive)."""
    for p, ((holder, org_id), own) in enumerate(zip(holders, serials, strict=True)):
        keys = [unit_key(JOURNEY_GTIN, s) for s in own]
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            cmo.transact("CustodyLedger", "commission", batch, [], chunk, bytes(32))
            sid = f"LOAD-{p}-{start}".encode().ljust(32, b"\0")
            cmo.transact("CustodyLedger", "ship", sid, org_id, chunk, bytes(32), bytes(32))
            holder.transact("CustodyLedger", "receiveShipment", sid, chunk, bytes(32))


def _baseline(url: str, w3: Any, holders: list[tuple[LedgerClient, int]], serials: list[list[str]]) -> float:
    """Pre-signed single-pack decommissions sent pipelined in JSON-RPC batches, counted when mined:
    transactions per second from the first send to the last receipt."""
    ledger = holders[0][0].contracts["CustodyLedger"]
    block = w3.eth.get_block("latest")
    max_fee = 2 * int(block.get("baseFeePerGas", 0)) + 10**9
    raws: list[str] = []
    last: dict[str, int] = {}
    rows = max(len(s) for s in serials)
    nonces = {h.account.address: w3.eth.get_transaction_count(h.account.address) for h, _ in holders}
    gas = None
    for i in range(rows):  # interleaved, as many pharmacies' counters would send
        for (holder, _), own in zip(holders, serials, strict=True):
            if i >= len(own):
                continue
            data = ledger.encode_abi(
                "decommission", args=[[unit_key(JOURNEY_GTIN, own[i])], UnitState.DISPENSED, bytes(32)]
            )
            tx = {"to": ledger.address, "data": data, "value": 0, "chainId": w3.eth.chain_id}
            if gas is None:
                gas = int(w3.eth.estimate_gas({**tx, "from": holder.account.address}) * 1.3)
            address = holder.account.address
            signed = holder.account.sign_transaction(
                {
                    **tx,
                    "nonce": nonces[address],
                    "gas": gas,
                    "maxFeePerGas": max_fee,
                    "maxPriorityFeePerGas": 10**9,
                }
            )
            last[address] = nonces[address]
            nonces[address] += 1
            raws.append("0x" + bytes(signed.raw_transaction).hex())
    addresses = list(last)
    first = sum(nonces.values()) - len(raws)  # nonces mined before the first send, all senders together

    def mined() -> int:
        counts = _rpc(url, [("eth_getTransactionCount", [a, "latest"]) for a in addresses])
        return int(sum(int(c, 16) for c in counts) - first)

    t0 = time.perf_counter()
    sent = 0
    while sent < len(raws):
        # Anvil's automine stalls for good with ~3,000 transactions pending at once (TOOLCHAIN-NOTES):
        # keep at most MAX_PENDING in flight, as any pipelined sender must
        if sent - mined() > MAX_PENDING - SEND_BATCH:
            time.sleep(0.002)
            continue
        answers = _rpc(url, [("eth_sendRawTransaction", [r]) for r in raws[sent : sent + SEND_BATCH]])
        bad = [a for a in answers if isinstance(a, dict)]
        if bad:
            raise RuntimeError(f"baseline send refused: {bad[:3]}")
        sent += len(answers)
    while mined() < len(raws):
        time.sleep(0.002)
    return len(raws) / (time.perf_counter() - t0)


def _dispense(
    base: str, work: list[tuple[str, list[list[str]]]], seconds: float, *, out_of_stock_is_error: bool
) -> tuple[list[tuple[float, str, list[str]]], Counter[int], float]:
    """One client per (token, requests) of `work`, each posting its requests (the serials of one
    `POST /v1/decommission`) one after the other until the time is up: (start time, operation id,
    serials) of every accepted request, answers by status, seconds taken."""
    accepted: list[tuple[float, str, list[str]]] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    deadline = time.time() + seconds

    def client(token: str, requests_: list[list[str]]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=120) as http:
            for serials in requests_:
                if time.time() >= deadline:
                    return
                t0 = time.time()
                units = [{"gtin": JOURNEY_GTIN, "serial": s} for s in serials]
                r = http.post(
                    "/v1/decommission", json={"units": units, "reason": "dispensed"}, headers=headers
                )
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code == 202:
                        accepted.append((t0, r.json()["id"], serials))
        if out_of_stock_is_error:
            raise RuntimeError("a client ran out of packs: give the pharmacies more stock")

    t0 = time.time()
    with ThreadPoolExecutor(len(work)) as pool:
        for f in [pool.submit(client, token, requests_) for token, requests_ in work]:
            f.result()
    return accepted, statuses, time.time() - t0


def _load(
    base: str,
    pharmacies: list[tuple[dict[str, Any], str]],
    serials: list[list[str]],
    clients: int,
    seconds: float,
) -> tuple[list[tuple[float, str, str]], Counter[int], float]:
    """Each client dispenses its pharmacy's packs one request a pack until the time is up:
    (start time, operation id, serial) of every accepted request, answers by status, seconds taken."""
    work: list[tuple[str, list[list[str]]]] = []
    for c in range(clients):
        p = c % len(pharmacies)
        share = serials[p][c // len(pharmacies) :: max(1, clients // len(pharmacies))]
        work.append((pharmacies[p][1], [[s] for s in share]))
    accepted, statuses, took = _dispense(base, work, seconds, out_of_stock_is_error=True)
    return [(t0, op, packs[0]) for t0, op, packs in accepted], statuses, took


def _totes(
    base: str,
    pharmacies: list[tuple[dict[str, Any], str]],
    serials: list[list[str]],
    size: int,
    seconds: float,
) -> tuple[list[tuple[float, str, list[str]]], Counter[int], float]:
    """One client per pharmacy posting totes of `size` packs until the time is up or its stock is
    gone."""
    work = [
        (token, [own[i : i + size] for i in range(0, len(own) - size + 1, size)])
        for (_, token), own in zip(pharmacies, serials, strict=True)
    ]
    return _dispense(base, work, seconds, out_of_stock_is_error=False)


def _verdict(ledger: Any, after_block: int, keys: set[bytes]) -> tuple[int, int, int]:
    """From the chain's UnitsDecommissioned logs since `after_block`: (accepted packs never
    decommissioned, accepted packs decommissioned more than once, packs decommissioned not accepted)."""
    seen: Counter[bytes] = Counter()
    for event in ledger.events.UnitsDecommissioned.get_logs(from_block=after_block + 1, to_block="latest"):
        for key in event["args"]["keys"]:
            seen[bytes(key)] += 1
    lost = sum(1 for k in keys if seen[k] == 0)
    return lost, sum(1 for k in keys if seen[k] > 1), sum(1 for k in seen if k not in keys)


def _outcomes(engine: Any, ids: list[str], timeout: float = 600) -> dict[str, tuple[str, float]]:
    """operation id -> (status, finished_at) once every one has finished (or the timeout passed)."""
    deadline = time.time() + timeout
    while True:
        rows: list[Any] = []
        with Session(engine) as session:
            for start in range(0, len(ids), 500):
                rows += session.execute(
                    select(col(Operation.id), col(Operation.status), col(Operation.finished_at)).where(
                        col(Operation.id).in_(ids[start : start + 500])
                    )
                ).all()
        finished = {str(i): (str(s), float(f or 0)) for i, s, f in rows}
        done = sum(1 for s, _ in finished.values() if s in ("succeeded", "failed"))
        if done == len(ids) or time.time() > deadline:
            return finished
        time.sleep(0.5)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rxledger-bench-dispense-"))
    with Devnet(port=0, log_file=tmp / "anvil.log", block_time=args.block_time) as devnet:
        url = devnet.rpc_url
        w3 = make_web3(url)
        admin_key = dev_accounts()[0]
        manifest = deploy_suite(w3, admin_key, manifest_dir=tmp / "deployments")
        settings = bench_settings(tmp, url)
        engine = api_engine(settings.database_url)
        runtime = Runtime.create(settings, engine)
        token = ensure_admin(runtime, admin_key)
        assert token is not None and token.token is not None
        env = _env(settings, free_port())
        indexer: subprocess.Popen[bytes] | None = None
        if args.separate_indexer:  # docker-compose.yml's topology: the indexer is a process of its own
            env["BENCH_SEPARATE_INDEXER"] = "1"
            with open(tmp / "indexer.log", "ab") as out:
                indexer = subprocess.Popen(
                    [sys.executable, "-m", "api.cli", "indexer", "run", "--poll", "0.05"],
                    env=env, cwd=CODE_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
        api = ApiProcess(env, tmp / "api.log")
        try:
            api.wait_ready()
            idle_rss = rss_mib(api.proc.pid) or 0.0
            r: dict[str, Any] = {
                "seconds": args.seconds,
                "clients": args.clients,
                "pharmacies": args.pharmacies,
                "block_time": args.block_time,
            }
            r["height_start"], r["empty_blocks_per_s_start"] = _mine_rate(url)
            admin = RxClient(api.base, token.token)
            clients = _users(admin)
            pharmacies = _pharmacies(admin, args.pharmacies)
            orgs = {o["gln"]: o for o in admin.get("/v1/organizations")}
            contracts = load_contracts(w3, manifest)
            cmo_org = next(o for o in orgs.values() if o["name"] == "CMO")
            cmo = LedgerClient(w3, contracts, runtime.keystore.account(cmo_org["keys"][0]))
            holders = [
                (LedgerClient(w3, contracts, runtime.keystore.account(org["keys"][0])), int(org["id"]))
                for org, _ in pharmacies
            ]
            bid = bytes.fromhex(_released(clients, "LOAD-A")[2:])
            base_serials = [
                [f"B{p}{i:06d}" for i in range(args.baseline_per_pharmacy)] for p in range(args.pharmacies)
            ]
            load_serials = [
                [f"L{p}{i:06d}" for i in range(args.stock_per_pharmacy)] for p in range(args.pharmacies)
            ]
            tote_serials = [
                [f"T{p}{i:06d}" for i in range(args.tote_stock_per_pharmacy)] for p in range(args.pharmacies)
            ]
            with console.status("stocking the pharmacies directly (commission, ship, receive)"):
                _stock(
                    cmo,
                    holders,
                    bid,
                    [b + s + t for b, s, t in zip(base_serials, load_serials, tote_serials, strict=True)],
                )
            with console.status("baseline: pre-signed decommissions sent pipelined to the node"):
                r["baseline_tx_per_s"] = _baseline(url, w3, holders, base_serials)
                r["baseline_txs"] = sum(len(s) for s in base_serials)
            head_before = w3.eth.block_number
            with console.status(
                f"{args.clients} clients dispensing through the API for {args.seconds:.0f} s"
            ):
                accepted, statuses, took = _load(
                    api.base, pharmacies, load_serials, args.clients, args.seconds
                )
            r["accepted"] = len(accepted)
            r["answers"] = {str(k): v for k, v in sorted(statuses.items())}
            r["accepted_per_s"] = len(accepted) / took
            with console.status("waiting for every accepted operation's outcome"):
                ids = [a[1] for a in accepted]
                finished = _outcomes(engine, ids)
            done = [op for op, (st, _) in finished.items() if st in ("succeeded", "failed")]
            lat = [
                finished[op][1] - t0 for t0, op, _ in accepted if finished.get(op, ("", 0))[0] == "succeeded"
            ]
            r["succeeded"] = len(lat)
            r["failed"] = sum(1 for s, _ in finished.values() if s == "failed")
            r["unfinished"] = len(ids) - len(done)
            r["completed_per_s"] = len(lat) / (
                max(f for _, f in finished.values()) - min(a[0] for a in accepted)
            )
            r["indexed_p50_ms"] = _pct(lat, 0.5) * 1000
            r["indexed_p95_ms"] = _pct(lat, 0.95) * 1000
            # the verdict from the chain: every accepted pack dispensed, exactly once
            ledger = contracts["CustodyLedger"]
            keys = {unit_key(JOURNEY_GTIN, s) for _, _, s in accepted}
            r["lost"], r["duplicated"], r["dispensed_not_accepted"] = _verdict(ledger, head_before, keys)
            if args.tote_seconds > 0:
                head_before = w3.eth.block_number
                with console.status(f"totes of {args.tote_size} packs, one client per pharmacy"):
                    totes, tote_statuses, tote_took = _totes(
                        api.base, pharmacies, tote_serials, args.tote_size, args.tote_seconds
                    )
                    tote_done = _outcomes(engine, [t[1] for t in totes])
                packs = sum(len(t[2]) for t in totes)
                r["tote_size"] = args.tote_size
                r["totes_accepted"] = len(totes)
                r["tote_answers"] = {str(k): v for k, v in sorted(tote_statuses.items())}
                r["tote_packs_accepted_per_s"] = packs / tote_took
                ok = [
                    (t0, tote_done[op][1], n)
                    for t0, op, n in totes
                    if tote_done.get(op, ("", 0))[0] == "succeeded"
                ]
                r["tote_packs_completed_per_s"] = (
                    sum(len(n) for _, _, n in ok) / (max(f for _, f, _ in ok) - min(t0 for t0, _, _ in ok))
                    if ok
                    else 0.0
                )
                r["tote_indexed_p95_ms"] = _pct([f - t0 for t0, f, _ in ok], 0.95) * 1000 if ok else 0.0
                tote_keys = {unit_key(JOURNEY_GTIN, s) for _, _, n in totes for s in n}
                r["tote_lost"], r["tote_duplicated"], _ = _verdict(ledger, head_before, tote_keys)
            r["api_idle_rss_mib"] = idle_rss
            r["api_peak_rss_mib"] = peak_rss_mib(api.proc.pid) or 0.0
            r["indexer_peak_rss_mib"] = peak_rss_mib(indexer.pid) if indexer is not None else None
            r["separate_indexer"] = bool(indexer)
            r["height_end"], r["empty_blocks_per_s_end"] = _mine_rate(url)
            return r
        finally:
            api.stop()
            if indexer is not None:
                indexer.terminate()
                indexer.wait(timeout=20)
            engine.dispose()


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    def fig(name: str, value: float, unit: str, baseline: float, baseline_name: str) -> dict[str, Any]:
        return {
            "name": name,
            "value": round(value, 3),
            "unit": unit,
            "baseline": round(baseline, 3),
            "baseline_name": baseline_name,
            "ratio": float(f"{value / baseline:.4g}") if baseline else None,
        }

    chain = (
        "the chain's capacity: the same single-pack decommissions pre-signed and sent pipelined to the node"
    )
    blocks = f"{r['block_time']:g}-s blocks" if r.get("block_time") else "automine"
    who = f"{r['clients']} clients of {r['pharmacies']} pharmacies, {r['seconds']:.0f} s, {blocks}"
    return [
        fig(f"single-pack dispenses accepted through the API ({who})", r["accepted_per_s"], "requests/s",
            r["baseline_tx_per_s"], chain),
        fig(f"single-pack dispenses completed (indexed) through the API ({who})", r["completed_per_s"],
            "operations/s", r["baseline_tx_per_s"], chain),
        fig("single-pack dispense: p95 request -> indexed", r["indexed_p95_ms"], "ms",
            r["indexed_p50_ms"], "its own median"),
        fig("dispense load: operations lost + duplicated on chain", r["lost"] + r["duplicated"], "operations",
            r["accepted"], "operations accepted"),
        *([
            fig(f"tote dispenses of {r['tote_size']} packs completed (indexed), one client per pharmacy",
                r["tote_packs_completed_per_s"], "packs/s", r["baseline_tx_per_s"],
                chain + " (one pack each)"),
            fig(f"tote of {r['tote_size']}: p95 request -> indexed", r["tote_indexed_p95_ms"], "ms",
                r["indexed_p95_ms"], "the single-pack p95 of the same run"),
            fig("tote load: packs lost + duplicated on chain", r["tote_lost"] + r["tote_duplicated"], "packs",
                r["totes_accepted"] * r["tote_size"], "packs accepted"),
        ] if "tote_size" in r else []),
        fig("peak memory of the API process under the dispense load", r["api_peak_rss_mib"], "MiB",
            r["api_idle_rss_mib"], "the same process idle after start-up"),
        fig(f"Anvil: empty blocks mined per second at height {r['height_end']:,}",
            r["empty_blocks_per_s_end"], "blocks/s", r["empty_blocks_per_s_start"],
            f"the same at height {r['height_start']:,}"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--pharmacies", type=int, default=8)
    parser.add_argument("--stock-per-pharmacy", type=int, default=10_000)
    parser.add_argument("--baseline-per-pharmacy", type=int, default=500)
    parser.add_argument("--tote-seconds", type=float, default=20.0, help="0: no tote phase")
    parser.add_argument("--tote-size", type=int, default=100)
    parser.add_argument("--tote-stock-per-pharmacy", type=int, default=4_000)
    parser.add_argument(
        "--separate-indexer",
        action="store_true",
        help="the indexer as its own process (docker-compose.yml), not inside the API (rxledger up)",
    )
    parser.add_argument(
        "--block-time", type=float, default=None, help="seconds per block (default: automine)"
    )
    parser.add_argument("--json", type=Path, help="write the figures (bench/results.json entries) here")
    args = parser.parse_args()
    r = run(args)
    table = Table("figure", "value", "baseline", "ratio")
    for f in figures(r):
        table.add_row(f["name"], f"{f['value']:,} {f['unit']}", f"{f['baseline']:,}", str(f["ratio"]))
    console.print(table)
    console.print_json(json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps({"raw": r, "figures": figures(r)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
