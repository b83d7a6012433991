"""The indexer process killed (SIGKILL) in the middle of a range, then started again: it resumes from
its checkpoint, and `rxledger audit consistency --full` finds the read models equal to the contracts.

To kill it at a known point, its node is a proxy that holds the answer to the indexer's second
eth_getLogs: the process has read a range's position and is waiting for its logs when it dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import Deployment, deploy_suite
from node.devnet import Devnet
from node.indexer.schema import Checkpoint, table
from node.ledger.consortium import onboard
from node.ledger.journey import JOURNEY_GTIN
from tests.indexer.scenario import busy_day


class HoldingNode:
    """A JSON-RPC proxy that forwards everything, except that it holds the `hold_at`-th eth_getLogs
    answer until released (and signals when it starts holding)."""

    def __init__(self, upstream: str, hold_at: int) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()
        self.get_logs = 0
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                payload = json.loads(raw)
                calls = payload if isinstance(payload, list) else [payload]
                if any(c.get("method") == "eth_getLogs" for c in calls):
                    node.get_logs += 1
                    if node.get_logs == hold_at:
                        node.holding.set()
                        node.release.wait(30)
                answer = httpx.post(
                    upstream, content=raw, headers={"Content-Type": "application/json"}, timeout=60
                )
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)
                except OSError:
                    pass  # the indexer is gone

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "api.cli", *args]


def _env(tmp: Path, rpc: str, manifests: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXLEDGER_")}
    env.update(
        {
            "RXLEDGER_RPC_URL": rpc,
            "RXLEDGER_CHAIN_ID": "31337",
            "RXLEDGER_DATABASE_URL": f"sqlite:///{tmp / 'index.db'}",
            "RXLEDGER_MANIFEST_DIR": str(manifests),
            "RXLEDGER_DATA_DIR": str(tmp),
        }
    )
    return env


def _checkpoint(tmp: Path) -> int | None:
    engine = create_engine(f"sqlite:///{tmp / 'index.db'}")
    try:
        with engine.connect() as conn:
            value = conn.execute(select(table(Checkpoint).c.block_number)).scalar()  # type: ignore[attr-defined]
        return None if value is None else int(value)
    except Exception:  # no table yet
        return None
    finally:
        engine.dispose()


@pytest.fixture
def busy_chain(tmp_path: Path) -> Iterator[tuple[Devnet, Path]]:
    with Devnet(port=0) as devnet:
        w3 = make_web3(devnet.rpc_url)
        admin = dev_accounts()[0]
        manifests = tmp_path / "deployments"
        manifest = deploy_suite(w3, admin, manifest_dir=manifests)
        orgs = onboard(w3, Deployment.load(w3, manifest).contracts, admin, seed="indexer-kill")
        sponsor, cmo = orgs["Sponsor Pharma AG"], orgs["Contract Manufacturing GmbH"]
        sponsor.client.transact("BatchRegistry", "registerProduct", int(JOURNEY_GTIN))
        sponsor.client.transact("BatchRegistry", "authorizeManufacturer", int(JOURNEY_GTIN), cmo.id)
        busy_day(orgs, "K0")
        devnet.rpc("anvil_mine", [hex(600)])  # past the indexer's first range of 500 blocks
        busy_day(orgs, "K1")
        busy_day(orgs, "K2")
        yield devnet, manifests


@pytest.mark.chain
def test_indexer_killed_mid_range_resumes_and_the_audit_passes(
    tmp_path: Path, busy_chain: tuple[Devnet, Path]
) -> None:
    devnet, manifests = busy_chain
    head = make_web3(devnet.rpc_url).eth.block_number
    node = HoldingNode(devnet.rpc_url, hold_at=2)
    first = subprocess.Popen(
        _cli("indexer", "run", "--poll", "0.05"),
        env=_env(tmp_path, node.url, manifests),
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "first.log").open("wb"),  # a file: an unread pipe could fill and block it
    )
    try:
        assert node.holding.wait(60), "the indexer never asked for a second range"
        before = _checkpoint(tmp_path)
        assert before is not None and before < head  # one range applied, more to come
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert first.returncode == -signal.SIGKILL
    finally:
        if first.poll() is None:  # a failed assertion must not leave the process behind
            first.kill()
            first.wait(10)
        node.close()
    assert _checkpoint(tmp_path) == before  # the killed range left nothing behind

    env = _env(tmp_path, devnet.rpc_url, manifests)
    second = subprocess.Popen(
        _cli("indexer", "run", "--poll", "0.05"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "second.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 60
        while _checkpoint(tmp_path) != head and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _checkpoint(tmp_path) == head, (tmp_path / "second.log").read_text()[-2000:]
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(15)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait(10)
    audit = subprocess.run(
        _cli("audit", "consistency", "--full"), env=env, capture_output=True, text=True, timeout=120
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
