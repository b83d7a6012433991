"""Partner-API test harness: a devnet of the package's own with the suite deployed, the API served by
a real uvicorn on a free port (submitter inside), the indexer following in a thread, and the
consortium admin bootstrapped. `consortium` onboards the six demo organisations *through the API*
with one user per role in each."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import Engine
from web3 import Web3

from api.admin.bootstrap import ensure_admin
from api.app import create_app
from api.client import RxClient
from api.database import api_engine
from api.runtime import Runtime
from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import Manifest, deploy_suite
from node.devnet import Devnet
from node.indexer.follower import Indexer
from node.ledger.consortium import DEMO_ORGS
from node.ledger.journey import JOURNEY_GTIN
from node.settings import Settings

CREDENTIAL = "correct horse battery staple"
# RXLEDGER_TEST_BLOCK_TIME=2 runs the same tests on a chain that mines every 2 s, as a Besu QBFT
# network does (non-instant receipts, a pending pool), instead of a block per transaction.
SLOW_CHAIN_BLOCK_TIME = float(os.environ.get("RXLEDGER_TEST_BLOCK_TIME") or 0) or None
ROLES = ("operator", "qp", "key_admin", "viewer")
SHORT = {  # demo organisation -> short name used in tests
    "Sponsor Pharma AG": "sponsor",
    "Contract Manufacturing GmbH": "cmo",
    "Alpine Logistics 3PL": "3pl",
    "Euro Wholesale Distribution": "distributor",
    "City Pharmacy": "pharmacy",
    "National Medicines Agency": "regulator",
}
KIND = {
    "sponsor": "sponsor",
    "cmo": "cmo",
    "3pl": "logistics",
    "distributor": "distributor",
    "pharmacy": "dispenser",
    "regulator": "regulator",
}


def serve(
    settings: Settings, *, run_submitter: bool = True, mined: threading.Event | None = None
) -> tuple[uvicorn.Server, threading.Thread, str]:
    """The API under uvicorn in a thread, on a free port; returns (server, thread, base URL)."""
    app = create_app(settings, run_submitter=run_submitter, mined=mined)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def stop_server(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=15)


@dataclass
class ApiNet:
    devnet: Devnet
    w3: Web3
    manifest: Manifest
    settings: Settings
    engine: Engine
    base_url: str
    admin_token: str
    indexer_stop: threading.Event
    tmp: Path

    def client(self, token: str | None = None) -> RxClient:
        return RxClient(self.base_url, token)

    @property
    def admin(self) -> RxClient:
        return self.client(self.admin_token)


def api_settings(tmp: Path, rpc_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "rpc_url": rpc_url,
        "chain_id": 31337,
        "database_url": f"sqlite:///{tmp}/api.db",
        "manifest_dir": tmp / "deployments",
        "keystore_dir": tmp / "keystore",
        "keystore_password": SecretStr("test-keystore-password"),
        "keystore_scrypt_n": 2**10,
        "documents_dir": tmp / "documents",
        "data_dir": tmp,
        "fund_new_keys_wei": 10**20,
        "submitter_index_timeout": 10.0,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@contextlib.contextmanager
def running_network(tmp: Path, database_url: str | None = None) -> Iterator[ApiNet]:
    """Devnet + suite + API (with submitter) + indexer thread + bootstrapped admin."""
    with Devnet(port=0, block_time=SLOW_CHAIN_BLOCK_TIME) as devnet:
        w3 = make_web3(devnet.rpc_url)
        admin_key = dev_accounts()[0]
        manifest = deploy_suite(w3, admin_key, manifest_dir=tmp / "deployments")
        overrides = {"database_url": database_url} if database_url else {}
        settings = api_settings(tmp, devnet.rpc_url, **overrides)
        engine = api_engine(settings.database_url)
        token = ensure_admin(Runtime.create(settings, engine), admin_key)
        assert token is not None and token.token is not None
        indexer = Indexer(engine, w3, manifest)
        stop, mined = threading.Event(), threading.Event()
        indexer_thread = threading.Thread(
            target=indexer.run, args=(stop,), kwargs={"wake": mined}, daemon=True
        )
        indexer_thread.start()
        server, thread, base = serve(settings, mined=mined)
        try:
            yield ApiNet(devnet, w3, manifest, settings, engine, base, token.token, stop, tmp)
        finally:
            stop_server(server, thread)
            stop.set()
            indexer_thread.join(timeout=10)
            engine.dispose()


@pytest.fixture(scope="package")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiNet]:
    with running_network(tmp_path_factory.mktemp("apinet")) as network:
        yield network


@dataclass
class Consortium:
    """The six demo organisations onboarded through the API; tokens[(org, role)] for every role."""

    net: ApiNet
    org_ids: dict[str, int]
    glns: dict[str, str]
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    usernames: dict[tuple[str, str], str] = field(default_factory=dict)

    def as_(self, org: str, role: str = "operator") -> RxClient:
        return self.net.client(self.tokens[(org, role)])

    def signature(self, org: str) -> dict[str, str]:
        return {"username": self.usernames[(org, "qp")], "credential": CREDENTIAL}


def onboard_consortium(net: ApiNet) -> Consortium:
    """The six demo organisations and a user per role in each, all through the API."""
    admin = net.admin
    for spec in DEMO_ORGS:
        short = SHORT[spec.name]
        admin.post("/v1/organizations", {"gln": spec.gln, "name": spec.name, "roles": [KIND[short]]})
    orgs = {o["gln"]: o["id"] for o in admin.get("/v1/organizations")}
    result = Consortium(net, {}, {})
    for spec in DEMO_ORGS:
        short = SHORT[spec.name]
        result.org_ids[short] = orgs[spec.gln]
        result.glns[short] = spec.gln
        for role in ROLES:
            username = f"{short}.{role}"
            body = {
                "username": username,
                "printed_name": f"{short.title()} {role}",
                "role": role,
                "credential": CREDENTIAL,
            }
            created = admin.post(f"/v1/organizations/{orgs[spec.gln]}/users", body, wait=False)
            result.tokens[(short, role)] = created["token"]["token"]
            result.usernames[(short, role)] = username
    result.as_("sponsor").post("/v1/products", {"gtin": JOURNEY_GTIN})
    result.as_("sponsor").post(
        f"/v1/products/{JOURNEY_GTIN}/manufacturers", {"org_id": result.org_ids["cmo"]}
    )
    return result


@pytest.fixture(scope="package")
def consortium(net: ApiNet) -> Consortium:
    return onboard_consortium(net)
