"""Partner-API write benchmark: what the durable write path (HTTP, validation, pre-check simulation,
outbox, submitter, waiting for the indexer) costs over sending the same transactions directly with
the organisation's key, measured in the same run on the same devnet.

- commissioning a batch of --units packs (default 100,000) in cases of 100: accepted -> on chain ->
  indexed, as one request; baseline: the same commission transactions sent directly;
- custody: --shipments cases shipped CMO -> distributor and received, each its own operation,
  request -> indexed latency, with 1 and --concurrency clients; baseline: the same ship and receive
  transactions sent directly one after the other (send -> receipt);
- single-pack decommissioning at a counter (--dispenses, one request after the other);
- peak memory (VmHWM) of the API process, which runs the submitter and the indexer in-process as
  `rxledger up` does; baseline: the same process idle after start-up.

The API runs in its own process (`python -m bench.writes --serve`, settings from RXLEDGER_* variables), so
the load generator's memory and CPU are not counted as the API's.

Usage: scripts/bench-api [--units 100000] [--shipments 200] [--concurrency 8] [--dispenses 200]
                         [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from api.admin.bootstrap import ensure_admin
from api.client import RxClient
from api.database import api_engine
from api.runtime import Runtime
from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import deploy_suite, load_contracts, load_manifest
from node.devnet import Devnet, free_port
from node.ledger.client import LedgerClient
from node.ledger.constants import UnitState
from node.ledger.identifiers import container_key, unit_key
from node.ledger.journey import JOURNEY_GTIN, SITE_GLN, sscc
from node.procmem import peak_rss_mib, rss_mib
from node.settings import Settings

console = Console()
CREDENTIAL = "bench-signing-credential"
CODE_ROOT = Path(__file__).resolve().parent.parent
PER_CASE = 100
SPONSOR, CMO, DISTRIBUTOR = "4012345000009", "4098765000003", "4055555000001"


# ------------------------------------------------------------------ the API process


def serve() -> None:
    """The API as `rxledger up` runs it (submitter and indexer in the process, the indexer woken
    by mined transactions), minus the devnet: settings from the environment."""
    import uvicorn

    from api.app import create_app
    from node.indexer.follower import Indexer

    settings = Settings()
    engine = api_engine(settings.database_url)
    w3 = make_web3(settings.rpc_url)
    manifest = load_manifest(settings.manifest_dir, settings.chain_id)
    if manifest is None:
        raise SystemExit(f"no deployment manifest in {settings.manifest_dir}")
    stop, mined = threading.Event(), threading.Event()
    if not os.environ.get("BENCH_SEPARATE_INDEXER"):  # else `rxledger indexer run` runs beside it
        indexer = Indexer(engine, w3, manifest, confirmations=settings.confirmations)
        threading.Thread(target=indexer.run, args=(stop,), kwargs={"wake": mined}, daemon=True).start()
    try:
        uvicorn.run(
            create_app(settings, mined=mined),
            host="127.0.0.1",
            port=settings.api_port,
            log_level="warning",
            access_log=False,
        )
    finally:
        stop.set()


class ApiProcess:
    """`python -m bench.writes --serve` in its own process group, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = int(env["RXLEDGER_API_PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.writes", "--serve"],
                env=env,
                cwd=CODE_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/health", timeout=5).status_code < 500:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"API did not answer:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _env(settings: Settings, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXLEDGER_")}
    password = settings.keystore_password
    env.update(
        RXLEDGER_RPC_URL=settings.rpc_url,
        RXLEDGER_DATABASE_URL=settings.database_url,
        RXLEDGER_MANIFEST_DIR=str(settings.manifest_dir),
        RXLEDGER_KEYSTORE_DIR=str(settings.keystore_dir),
        RXLEDGER_KEYSTORE_PASSWORD=password.get_secret_value() if password else "",
        RXLEDGER_KEYSTORE_SCRYPT_N=str(settings.keystore_scrypt_n),
        RXLEDGER_DOCUMENTS_DIR=str(settings.documents_dir),
        RXLEDGER_DATA_DIR=str(settings.data_dir),
        RXLEDGER_FUND_NEW_KEYS_WEI=str(settings.fund_new_keys_wei),
        RXLEDGER_API_PORT=str(port),
        RXLEDGER_LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join([str(CODE_ROOT), *filter(None, [env.get("PYTHONPATH")])]),
    )
    return env


# ------------------------------------------------------------------ set-up through the API


def _users(admin: RxClient) -> dict[str, RxClient]:
    """Sponsor, CMO and distributor, each with an operator (and a QP where batches need one)."""
    for gln, name, kind in (
        (SPONSOR, "Sponsor", "sponsor"),
        (CMO, "CMO", "cmo"),
        (DISTRIBUTOR, "Wholesale", "distributor"),
    ):
        admin.post("/v1/organizations", {"gln": gln, "name": name, "roles": [kind]})
    orgs = {o["gln"]: o for o in admin.get("/v1/organizations")}
    clients: dict[str, RxClient] = {}
    for gln, short, roles in (
        (SPONSOR, "sponsor", ("operator", "qp")),
        (CMO, "cmo", ("operator", "qp")),
        (DISTRIBUTOR, "distributor", ("operator",)),
    ):
        for role in roles:
            body = {
                "username": f"{short}.{role}",
                "printed_name": short,
                "role": role,
                "credential": CREDENTIAL,
            }
            token = admin.post(f"/v1/organizations/{orgs[gln]['id']}/users", body, wait=False)["token"][
                "token"
            ]
            clients[f"{short}.{role}"] = admin.with_token(token)
    clients["sponsor.operator"].post("/v1/products", {"gtin": JOURNEY_GTIN})
    clients["sponsor.operator"].post(
        f"/v1/products/{JOURNEY_GTIN}/manufacturers", {"org_id": orgs[CMO]["id"]}
    )
    return clients


def _released(clients: dict[str, RxClient], lot: str) -> str:
    cmo, cmo_qp, sponsor_qp = clients["cmo.operator"], clients["cmo.qp"], clients["sponsor.qp"]
    bid: str = cmo.post(
        "/v1/batches", {"gtin": JOURNEY_GTIN, "lot": lot, "expiry": "2029-12-31", "site_gln": SITE_GLN}
    )["result"]["batch_id"]
    cmo_qp.post(f"/v1/batches/{bid}/certificates", files={"file": ("coa", lot.encode())})
    doc = sponsor_qp.post("/v1/documents", wait=False, files={"file": ("qp", b"qp " + lot.encode())})
    sponsor_qp.post(
        f"/v1/batches/{bid}/release",
        {
            "meaning": "released",
            "signature": {"username": "sponsor.qp", "credential": CREDENTIAL},
            "qp_certificate_sha256": doc["document_sha256"],
        },
    )
    return bid


# ------------------------------------------------------------------ measuring


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def _bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task(label, total=total)

        def advance(n: int) -> None:
            progress.advance(task, n)

        yield advance


def _custody_api(
    cmo: RxClient, distributor: RxClient, dist_org: int, codes: Sequence[str], concurrency: int, tag: str
) -> tuple[float, list[float]]:
    """Ship each case as its own shipment and receive it, `concurrency` cases at a time; returns the
    wall time and the request -> indexed latency of every operation (ship and receive)."""
    lat: list[float] = []
    lock = threading.Lock()

    with _bar(f"ship + receive through the API, {concurrency} client(s)", len(codes)) as advance:

        def one(i: int) -> None:
            sid = f"{tag}-{i:05d}"
            t0 = time.perf_counter()
            shipped = cmo.post(
                "/v1/shipments", {"to_org": dist_org, "containers": [codes[i]], "shipment_id": sid}
            )
            t1 = time.perf_counter()
            label = shipped["result"]["shipment_ids"][0]
            received = distributor.post(f"/v1/shipments/{label}/receive", {})
            t2 = time.perf_counter()
            if shipped["status"] != "succeeded" or received["status"] != "succeeded":
                raise RuntimeError(f"shipment {sid}: {shipped['status']} / {received['status']}")
            with lock:
                lat.extend((t1 - t0, t2 - t1))
            advance(1)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(len(codes))))
        wall = time.perf_counter() - t0
    return wall, lat


def _measure(
    api: ApiProcess, admin_token: str, w3: Any, manifest: Any, runtime: Runtime, args: argparse.Namespace
) -> dict[str, Any]:
    idle_rss = rss_mib(api.proc.pid) or 0.0
    clients = _users(RxClient(api.base, admin_token))
    cmo, distributor = clients["cmo.operator"], clients["distributor.operator"]
    orgs = {o["gln"]: o for o in RxClient(api.base, admin_token).get("/v1/organizations")}
    cases = max(1, args.units // PER_CASE)
    units = cases * PER_CASE
    r: dict[str, Any] = {
        "units": units,
        "shipments": args.shipments,
        "concurrency": args.concurrency,
        "dispenses": args.dispenses,
        "items_per_tx": runtime.settings.items_per_tx,
    }
    direct = LedgerClient(w3, load_contracts(w3, manifest), runtime.keystore.account(orgs[CMO]["keys"][0]))
    direct_dist = LedgerClient(
        w3, load_contracts(w3, manifest), runtime.keystore.account(orgs[DISTRIBUTOR]["keys"][0])
    )
    bid_a, bid_b = _released(clients, "BENCH-A"), _released(clients, "BENCH-B")

    # 1. Commissioning: the baseline sends the API's own transaction split directly.
    keys = [unit_key(JOURNEY_GTIN, f"A{i:07d}") for i in range(units)]
    case_keys = [container_key(sscc("4098765", 600_000 + i)) for i in range(cases)]
    cases_per_tx = max(1, runtime.settings.items_per_tx // PER_CASE)
    with _bar(f"commission {units:,} packs directly", cases) as advance:
        t0 = time.perf_counter()
        for start in range(0, cases, cases_per_tx):
            group = case_keys[start : start + cases_per_tx]
            ks = keys[start * PER_CASE : (start + len(group)) * PER_CASE]
            direct.transact("CustodyLedger", "commission", bytes.fromhex(bid_a[2:]), group, ks, bytes(32))
            advance(len(group))
        r["commission_direct_s"] = time.perf_counter() - t0
    serials = [f"B{i:07d}" for i in range(units)]
    ssccs = [sscc("4098765", 700_000 + i) for i in range(cases)]
    with console.status(f"commission {units:,} packs through the API (accepted -> on chain -> indexed)"):
        t0 = time.perf_counter()
        op = cmo.post("/v1/commission", {"batch_id": bid_b, "serials": serials, "containers": ssccs})
        r["commission_api_s"] = time.perf_counter() - t0
    if op["status"] != "succeeded":
        raise RuntimeError(f"commissioning through the API: {op}")
    r["commission_txs"] = op["txs_total"]

    # 2. Custody: ship + receive of single cases. Direct: one transaction after the other.
    opened = -(-args.dispenses // PER_CASE)
    n = min(args.shipments, (cases - opened) // 2)
    direct_lat: list[float] = []
    dist_id = int(orgs[DISTRIBUTOR]["id"])
    with _bar("ship + receive directly", n) as advance:
        t0 = time.perf_counter()
        for i in range(n):
            sid, item = f"D-{i:05d}".encode().ljust(32, b"\0"), [case_keys[i]]
            t1 = time.perf_counter()
            direct.transact("CustodyLedger", "ship", sid, dist_id, item, bytes(32), bytes(32))
            t2 = time.perf_counter()
            direct_dist.transact("CustodyLedger", "receiveShipment", sid, item, bytes(32))
            direct_lat.extend((t2 - t1, time.perf_counter() - t2))
            advance(1)
        r["custody_direct_ops_per_s"] = 2 * n / (time.perf_counter() - t0)
    r["custody_direct_p50_ms"] = _pct(direct_lat, 0.5) * 1000
    r["custody_direct_p95_ms"] = _pct(direct_lat, 0.95) * 1000
    for label, conc, chosen in (("api1", 1, ssccs[:n]), ("api", args.concurrency, ssccs[n : 2 * n])):
        wall, lat = _custody_api(cmo, distributor, dist_id, chosen, conc, f"S-{label}")
        r[f"custody_{label}_ops_per_s"] = 2 * n / wall
        r[f"custody_{label}_p50_ms"] = _pct(lat, 0.5) * 1000
        r[f"custody_{label}_p95_ms"] = _pct(lat, 0.95) * 1000
    r["custody_shipments"] = n

    # 3. Single-pack decommissioning, one request after the other (a counter scanning packs).
    cmo_cases_a = case_keys[n : n + opened]
    direct.transact("CustodyLedger", "unpackAll", cmo_cases_a, bytes(32))
    for code in ssccs[2 * n : 2 * n + opened]:
        cmo.post("/v1/unpack", {"container": code})
    d_lat, a_lat = [], []
    with _bar("decommission single packs, direct and through the API", args.dispenses) as advance:
        for i in range(args.dispenses):
            k = keys[(n + i // PER_CASE) * PER_CASE + i % PER_CASE]
            t1 = time.perf_counter()
            direct.transact("CustodyLedger", "decommission", [k], UnitState.SAMPLE, bytes(32))
            d_lat.append(time.perf_counter() - t1)
            unit = {
                "gtin": JOURNEY_GTIN,
                "serial": serials[(2 * n + i // PER_CASE) * PER_CASE + i % PER_CASE],
            }
            t1 = time.perf_counter()
            cmo.post("/v1/decommission", {"units": [unit], "reason": "sample"})
            a_lat.append(time.perf_counter() - t1)
            advance(1)
    for name, lat in (("direct", d_lat), ("api", a_lat)):
        r[f"single_{name}_p50_ms"] = statistics.median(lat) * 1000
        r[f"single_{name}_p95_ms"] = _pct(lat, 0.95) * 1000

    r["api_idle_rss_mib"] = idle_rss
    r["api_peak_rss_mib"] = peak_rss_mib(api.proc.pid) or 0.0
    return r


def bench_settings(tmp: Path, rpc_url: str) -> Settings:
    """The API's settings for a benchmark devnet: everything in `tmp`, a fast keystore, funded keys."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        rpc_url=rpc_url,
        database_url=f"sqlite:///{tmp}/api.db",
        manifest_dir=tmp / "deployments",
        keystore_dir=tmp / "keystore",
        keystore_password=SecretStr("bench"),
        keystore_scrypt_n=2**10,
        documents_dir=tmp / "documents",
        data_dir=tmp,
        fund_new_keys_wei=10**20,  # 100 ETH a key: the dev admin holds 10,000 for all of them
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rxledger-bench-api-"))
    with Devnet(port=0, log_file=tmp / "anvil.log") as devnet:
        w3 = make_web3(devnet.rpc_url)
        admin_key = dev_accounts()[0]
        manifest = deploy_suite(w3, admin_key, manifest_dir=tmp / "deployments")
        settings = bench_settings(tmp, devnet.rpc_url)
        engine = api_engine(settings.database_url)
        runtime = Runtime.create(settings, engine)
        token = ensure_admin(runtime, admin_key)
        assert token is not None and token.token is not None
        api = ApiProcess(_env(settings, free_port()), tmp / "api.log")
        try:
            api.wait_ready()
            return _measure(api, token.token, w3, manifest, runtime, args)
        finally:
            api.stop()
            engine.dispose()


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    """bench/results.json entries: each figure next to its baseline measured in the same run."""

    def fig(name: str, value: float, unit: str, baseline: float, baseline_name: str) -> dict[str, Any]:
        return {
            "name": name,
            "value": round(value, 3),
            "unit": unit,
            "baseline": round(baseline, 3),
            "baseline_name": baseline_name,
            "ratio": float(f"{value / baseline:.4g}"),
        }

    units, n = r["units"], r["custody_shipments"]
    direct = "the same transactions sent directly with the organisation's key, one after the other"
    return [
        fig(
            f"commission a {units:,}-unit batch through the API (accepted -> on chain -> indexed)",
            units / r["commission_api_s"],
            "units/s",
            units / r["commission_direct_s"],
            direct,
        ),
        fig(
            f"custody ship + receive through the API, {r['concurrency']} clients ({n} cases each way)",
            r["custody_api_ops_per_s"],
            "operations/s",
            r["custody_direct_ops_per_s"],
            direct,
        ),
        fig(
            f"custody ship + receive, {r['concurrency']} clients: p95 request -> indexed",
            r["custody_api_p95_ms"],
            "ms",
            r["custody_direct_p95_ms"],
            direct + " (send -> receipt)",
        ),
        fig(
            "custody ship + receive through the API, 1 client",
            r["custody_api1_ops_per_s"],
            "operations/s",
            r["custody_direct_ops_per_s"],
            direct,
        ),
        fig(
            "custody ship + receive, 1 client: p95 request -> indexed",
            r["custody_api1_p95_ms"],
            "ms",
            r["custody_direct_p95_ms"],
            direct + " (send -> receipt)",
        ),
        fig(
            f"decommission one pack through the API, p95 (n={r['dispenses']})",
            r["single_api_p95_ms"],
            "ms",
            r["single_direct_p95_ms"],
            direct + " (send -> receipt)",
        ),
        fig(
            "peak memory of the API process (submitter and indexer in-process) over this benchmark",
            r["api_peak_rss_mib"],
            "MiB",
            r["api_idle_rss_mib"],
            "the same process idle after start-up",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--units", type=int, default=100_000, help="packs to commission (cases of 100)")
    parser.add_argument("--shipments", type=int, default=200, help="cases shipped and received per run")
    parser.add_argument("--concurrency", type=int, default=8, help="clients for the custody figure")
    parser.add_argument("--dispenses", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    r = run(args)
    table = Table(title=f"partner API vs direct transactions (same devnet, same run; {r['units']:,} units)")
    for col in ("measure", "direct", "through the API", "ratio API/direct"):
        table.add_column(col, justify="right")
    c_d, c_a = r["commission_direct_s"], r["commission_api_s"]
    table.add_row(
        f"commission {r['units']:,} packs ({r['commission_txs']} tx)",
        f"{c_d:.2f} s",
        f"{c_a:.2f} s",
        f"{c_a / c_d:.2f}",
    )
    table.add_row(
        "  packs per second", f"{r['units'] / c_d:,.0f}", f"{r['units'] / c_a:,.0f}", f"{c_d / c_a:.2f}"
    )
    for label, conc in (("api1", 1), ("api", r["concurrency"])):
        d, a = r["custody_direct_ops_per_s"], r[f"custody_{label}_ops_per_s"]
        table.add_row(
            f"ship + receive, ops/s ({conc} client(s) via API)", f"{d:,.1f}", f"{a:,.1f}", f"{a / d:.2f}"
        )
        d, a = r["custody_direct_p95_ms"], r[f"custody_{label}_p95_ms"]
        table.add_row("  p95 request -> indexed", f"{d:.1f} ms", f"{a:.1f} ms", f"{a / d:.2f}")
    for q in ("p50", "p95"):
        d, a = r[f"single_direct_{q}_ms"], r[f"single_api_{q}_ms"]
        table.add_row(
            f"decommission 1 pack, {q} (n={r['dispenses']})", f"{d:.1f} ms", f"{a:.1f} ms", f"{a / d:.2f}"
        )
    table.add_row(
        "API process memory (idle -> peak)",
        "",
        f"{r['api_idle_rss_mib']:.0f} -> {r['api_peak_rss_mib']:.0f} MiB",
        "",
    )
    console.print(table)
    console.print("API = HTTP + validation + eth_call pre-check + outbox + submitter + wait until indexed.")
    if args.json:
        args.json.write_text(json.dumps({"raw": r, "figures": figures(r)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
