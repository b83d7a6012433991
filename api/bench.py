"""Partner-API benchmark: what the durable write path (HTTP, validation, pre-check simulation,
outbox, submitter, waiting for the indexer) costs over sending the same transactions directly with
the organisation's key, measured in the same run on the same devnet.

Usage: scripts/bench-api [--units 10000] [--dispenses 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from api.app import create_app
from api.bootstrap import ensure_admin
from api.client import RxClient
from api.database import api_engine
from api.runtime import Runtime
from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import deploy_suite, load_contracts
from node.devnet import Devnet
from node.indexer.follower import Indexer
from node.ledger.client import LedgerClient
from node.ledger.constants import UnitState
from node.ledger.identifiers import batch_id, container_key, unit_key
from node.ledger.journey import JOURNEY_GTIN, SITE_GLN, sscc
from node.settings import Settings

console = Console()
CREDENTIAL = "bench-signing-credential"


def _serve(settings: Settings, mined: threading.Event) -> tuple[uvicorn.Server, str]:
    app = create_app(settings, mined=mined)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def _released(client: RxClient, qp: RxClient, sponsor_qp: RxClient, lot: str) -> str:
    bid: str = client.post(
        "/v1/batches", {"gtin": JOURNEY_GTIN, "lot": lot, "expiry": "2029-12-31", "site_gln": SITE_GLN}
    )["result"]["batch_id"]
    qp.post(f"/v1/batches/{bid}/certificates", files={"file": ("coa", lot.encode())})
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


def run(units: int, dispenses: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rxledger-bench-api-"))
    with Devnet(port=0) as devnet:
        w3 = make_web3(devnet.rpc_url)
        admin_key = dev_accounts()[0]
        manifest = deploy_suite(w3, admin_key, manifest_dir=tmp / "deployments")
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            rpc_url=devnet.rpc_url,
            database_url=f"sqlite:///{tmp}/api.db",
            manifest_dir=tmp / "deployments",
            keystore_dir=tmp / "keystore",
            keystore_password=SecretStr("bench"),
            keystore_scrypt_n=2**10,
            documents_dir=tmp / "documents",
            data_dir=tmp,
            fund_new_keys_wei=10**21,
        )
        engine = api_engine(settings.database_url)
        runtime = Runtime.create(settings, engine)
        token = ensure_admin(runtime, admin_key)
        assert token is not None and token.token is not None
        stop, mined = threading.Event(), threading.Event()
        indexer = Indexer(engine, w3, manifest)
        threading.Thread(target=indexer.run, args=(stop,), kwargs={"wake": mined}, daemon=True).start()
        server, base = _serve(settings, mined)
        try:
            return _measure(base, token.token, runtime, w3, manifest, units, dispenses)
        finally:
            server.should_exit = True
            stop.set()


def _measure(
    base: str, admin_token: str, runtime: Runtime, w3: Any, manifest: Any, units: int, dispenses: int
) -> dict[str, Any]:
    admin = RxClient(base, admin_token)
    tokens: dict[str, str] = {}
    for gln, name, kind in (("4012345000009", "Sponsor", "sponsor"), ("4098765000003", "CMO", "cmo")):
        admin.post("/v1/organizations", {"gln": gln, "name": name, "roles": [kind]})
    orgs = {o["gln"]: o for o in admin.get("/v1/organizations")}
    for gln, short in (("4012345000009", "sponsor"), ("4098765000003", "cmo")):
        for role in ("operator", "qp"):
            body = {
                "username": f"{short}.{role}",
                "printed_name": short,
                "role": role,
                "credential": CREDENTIAL,
            }
            tokens[f"{short}.{role}"] = admin.post(
                f"/v1/organizations/{orgs[gln]['id']}/users", body, wait=False
            )["token"]["token"]
    client = RxClient(base)
    cmo, cmo_qp = client.with_token(tokens["cmo.operator"]), client.with_token(tokens["cmo.qp"])
    sponsor, sponsor_qp = (
        client.with_token(tokens["sponsor.operator"]),
        client.with_token(tokens["sponsor.qp"]),
    )
    sponsor.post("/v1/products", {"gtin": JOURNEY_GTIN})
    sponsor.post(f"/v1/products/{JOURNEY_GTIN}/manufacturers", {"org_id": orgs["4098765000003"]["id"]})
    per_case = 100
    cases = max(1, units // per_case)
    results: dict[str, Any] = {"units": cases * per_case, "dispenses": dispenses}

    # Baseline: the same transactions sent directly with the CMO's own key.
    direct = LedgerClient(
        w3, load_contracts(w3, manifest), runtime.keystore.account(orgs["4098765000003"]["keys"][0])
    )
    bid_a = _released(cmo, cmo_qp, sponsor_qp, "BENCH-A")
    bid_b = _released(cmo, cmo_qp, sponsor_qp, "BENCH-B")
    keys = [unit_key(JOURNEY_GTIN, f"A{i:07d}") for i in range(cases * per_case)]
    case_keys = [container_key(sscc("4098765", 600_000 + i)) for i in range(cases)]
    t0 = time.perf_counter()
    for start in range(0, cases, 5):
        group = case_keys[start : start + 5]
        direct.transact(
            "CustodyLedger",
            "commission",
            bytes.fromhex(bid_a[2:]),
            group,
            keys[start * per_case : (start + len(group)) * per_case],
            bytes(32),
        )
    results["commission_direct_s"] = time.perf_counter() - t0
    serials = [f"B{i:07d}" for i in range(cases * per_case)]
    ssccs = [sscc("4098765", 700_000 + i) for i in range(cases)]
    t0 = time.perf_counter()
    op = cmo.post("/v1/commission", {"batch_id": bid_b, "serials": serials, "containers": ssccs})
    results["commission_api_s"] = time.perf_counter() - t0
    assert op["status"] == "succeeded", op
    results["commission_txs"] = op["txs_total"]

    # Single-pack decommissioning, one request after the other (a counter scanning packs).
    opened = -(-dispenses // per_case)
    direct.transact("CustodyLedger", "unpackAll", case_keys[:opened], bytes(32))
    for code in ssccs[:opened]:
        cmo.post("/v1/unpack", {"container": code})
    direct_lat, api_lat = [], []
    for i in range(dispenses):
        t0 = time.perf_counter()
        direct.transact("CustodyLedger", "decommission", [keys[i]], UnitState.SAMPLE, bytes(32))
        direct_lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cmo.post(
            "/v1/decommission", {"units": [{"gtin": JOURNEY_GTIN, "serial": serials[i]}], "reason": "sample"}
        )
        api_lat.append(time.perf_counter() - t0)
    for name, lat in (("direct", direct_lat), ("api", api_lat)):
        ordered = sorted(lat)
        results[f"single_{name}_p50_ms"] = statistics.median(ordered) * 1000
        results[f"single_{name}_p95_ms"] = ordered[int(0.95 * (len(ordered) - 1))] * 1000
    results["batch_id_check"] = "0x" + batch_id(JOURNEY_GTIN, "BENCH-B").hex() == bid_b
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--dispenses", type=int, default=200)
    args = parser.parse_args()
    r = run(args.units, args.dispenses)
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
    table.add_row("  packs per second", f"{r['units'] / c_d:,.0f}", f"{r['units'] / c_a:,.0f}", "")
    for q in ("p50", "p95"):
        d, a = r[f"single_direct_{q}_ms"], r[f"single_api_{q}_ms"]
        table.add_row(
            f"decommission 1 pack, {q} (n={r['dispenses']})", f"{d:.1f} ms", f"{a:.1f} ms", f"{a / d:.2f}"
        )
    console.print(table)
    console.print("API = HTTP + validation + eth_call pre-check + outbox + submitter + wait until indexed.")


if __name__ == "__main__":
    main()
