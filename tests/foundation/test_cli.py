"""The `rxledger` command line, run as a user runs it (the installed entry point, a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.procs import UpRecord, alive
from node.deploy import Deployment
from node.devnet import Devnet, free_port

RXLEDGER = str(Path(sys.executable).parent / "rxledger")


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RXLEDGER, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def cli_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXLEDGER_")}
    env.update({f"RXLEDGER_{k.upper()}": v for k, v in values.items()})
    env["COLUMNS"] = "200"  # rich wraps long lines at the terminal width otherwise
    return env


def test_status_exit_codes(tmp_path: Path, devnet: Devnet, deployed: Deployment, manifest_dir: Path) -> None:
    green = cli_env(rpc_url=devnet.rpc_url, manifest_dir=str(manifest_dir))
    # "ok" needs a live indexer (its checkpoint refreshed within 10 s): run one, as an operator would
    indexer = subprocess.Popen(
        [RXLEDGER, "indexer", "run"],
        env=green,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (ok := run_cli("status", env=green, cwd=tmp_path)).returncode != 0:
            assert indexer.poll() is None, indexer.stderr.read() if indexer.stderr else ""
            assert time.monotonic() < deadline, ok.stdout + ok.stderr
            time.sleep(0.5)
        assert "status: ok" in ok.stdout
        assert "CustodyLedger" in ok.stdout
        assert "outbox:   queued=0 running=0" in ok.stdout
        as_json = run_cli("status", "--json", env=green, cwd=tmp_path)
        assert as_json.returncode == 0, as_json.stdout
        assert json.loads(as_json.stdout)["chain"]["head_block"] >= deployed.manifest.deploy_block
        assert json.loads(as_json.stdout)["outbox"]["queued"] == 0
    finally:
        indexer.terminate()
        indexer.wait(timeout=30)
    stopped = run_cli("status", env=green, cwd=tmp_path)  # within 10 s of the last heartbeat: still ok
    assert stopped.returncode in (0, 1)

    down = cli_env(rpc_url=f"http://127.0.0.1:{free_port()}", manifest_dir=str(manifest_dir))
    bad = run_cli("status", env=down, cwd=tmp_path)
    assert bad.returncode == 1
    assert "status: degraded" in bad.stdout
    assert "cannot reach the chain" in bad.stdout


def test_deploy_refuses_then_forces(tmp_path: Path) -> None:
    with Devnet() as node:
        env = cli_env(rpc_url=node.rpc_url, manifest_dir=str(tmp_path / "deployments"))
        first = run_cli("deploy", env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        manifest = (tmp_path / "deployments" / "31337.json").read_text()
        again = run_cli("deploy", env=env, cwd=tmp_path)
        assert again.returncode == 1
        assert "--force" in again.stdout
        forced = run_cli("deploy", "--force", env=env, cwd=tmp_path)
        assert forced.returncode == 0
        assert (tmp_path / "deployments" / "31337.json").read_text() != manifest


def wait_for_health(url: str, proc: subprocess.Popen[str], timeout: float = 90) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "rxledger up exited early"
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                body: dict[str, object] = response.json()
                return body
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never became healthy")


def head_block(rpc_url: str) -> int:
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    return int(httpx.post(rpc_url, json=payload).json()["result"], 16)


@pytest.mark.slow
def test_up_down_and_resume(tmp_path: Path) -> None:
    """`up` brings everything up; `down` stops it with nothing left behind; `up` again resumes the
    same chain and deployment; Ctrl-C stops it too."""
    devnet_port, api_port = free_port(), free_port()
    rpc_url = f"http://127.0.0.1:{devnet_port}"
    env = cli_env(devnet_port=str(devnet_port), rpc_url=rpc_url, api_port=str(api_port))
    health_url = f"http://127.0.0.1:{api_port}/health"
    pidfile = tmp_path / "var" / "up.pid"

    def start(log_name: str) -> subprocess.Popen[str]:
        log = open(tmp_path / log_name, "w")  # noqa: SIM115 - handed to the child
        return subprocess.Popen(
            [RXLEDGER, "up"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True
        )

    first = start("up1.log")
    try:
        health = wait_for_health(health_url, first)
        assert health["status"] == "ok"
        record = UpRecord.read(pidfile)
        assert record is not None and record.pid == first.pid and record.anvil_pid is not None
        manifest = (tmp_path / "deployments" / "31337.json").read_bytes()
        httpx.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "anvil_mine", "params": ["0x5"]})
        height = head_block(rpc_url)

        second = run_cli("up", env=env, cwd=tmp_path)
        assert second.returncode == 1 and "already running" in second.stdout

        stopped = run_cli("down", env=env, cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stdout
        assert first.wait(timeout=30) == 0
        assert not alive(record.anvil_pid)
        assert not pidfile.exists()
        assert (tmp_path / "var" / "devnet" / "state.json").exists()
    finally:
        first.kill()
        first.wait()

    again = start("up2.log")
    try:
        wait_for_health(health_url, again)
        assert head_block(rpc_url) >= height  # the same chain, resumed from the state file
        assert (tmp_path / "deployments" / "31337.json").read_bytes() == manifest
        assert "contracts verified" in (tmp_path / "up2.log").read_text()
        record = UpRecord.read(pidfile)
        assert record is not None and record.anvil_pid is not None
        again.send_signal(signal.SIGINT)  # Ctrl-C
        assert again.wait(timeout=30) == 0
        assert not alive(record.anvil_pid)
        assert not pidfile.exists()
    finally:
        again.kill()
        again.wait()
    assert run_cli("down", env=env, cwd=tmp_path).stdout.startswith("nothing to stop")
