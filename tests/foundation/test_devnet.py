"""The Anvil child process: starts, answers, stops, leaves nothing behind, keeps state when asked."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from eth_typing import ChecksumAddress

from api.procs import alive
from node.accounts import dev_accounts
from node.artifacts import load_artifact
from node.chain import Sender, make_web3
from node.devnet import DEFAULT_GAS_LIMIT, Devnet, DevnetError, port_is_free


def wait_until_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_start_and_stop_leave_no_process_port_or_cache() -> None:
    node = Devnet(port=0).start()
    pid, port = node.pid, node.port
    assert pid is not None and alive(pid)
    cache = Path(node.command()[node.command().index("--cache-path") + 1])
    assert cache.is_dir()
    assert "--prune-history" in node.command()
    assert int(node.rpc("eth_chainId"), 16) == 31337
    assert node.stop() is not None
    assert not alive(pid)
    assert not cache.exists()
    assert port_is_free(port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert node.stop() is None  # idempotent


def test_context_manager_stops_on_exception() -> None:
    with pytest.raises(RuntimeError, match="boom"), Devnet() as node:
        pid = node.pid
        raise RuntimeError("boom")
    assert pid is not None and not alive(pid)


def test_anvil_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: even SIGKILL of the Python parent takes Anvil down."""
    script = textwrap.dedent(
        """
        import sys, time
        from node.devnet import Devnet
        node = Devnet().start()
        print(node.pid, node.command()[node.command().index("--cache-path") + 1], flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    cache_dir = ""
    try:
        assert parent.stdout is not None
        pid_text, cache_dir = parent.stdout.readline().split()
        anvil_pid = int(pid_text)
        assert alive(anvil_pid)
        parent.kill()
        parent.wait()
        assert wait_until_gone(anvil_pid), "anvil outlived its parent"
    finally:
        parent.kill()
        parent.wait()
        # A SIGKILLed parent cannot remove Anvil's cache dir (it is tiny with --prune-history).
        if cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)


def test_custom_chain_id_gas_limit_and_accounts() -> None:
    with Devnet(chain_id=1337, gas_limit=50_000_000) as node:
        w3 = make_web3(node.rpc_url)
        assert w3.eth.chain_id == 1337
        assert w3.eth.get_block("latest")["gasLimit"] == 50_000_000
        assert [a.lower() for a in w3.eth.accounts] == [a.address.lower() for a in dev_accounts()]
    with Devnet() as node:
        assert make_web3(node.rpc_url).eth.get_block("latest")["gasLimit"] == DEFAULT_GAS_LIMIT


def test_snapshot_revert_and_mine() -> None:
    with Devnet() as node:
        snapshot = node.snapshot()
        node.mine(7)
        assert node.block_number() == 7
        node.revert(snapshot)
        assert node.block_number() == 0
        with pytest.raises(DevnetError):
            node.revert("0x99")


def test_interval_mining() -> None:
    with Devnet(block_time=0.3) as node:
        time.sleep(1.0)
        assert node.block_number() >= 2  # no transactions needed


def test_busy_port_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(DevnetError, match="in use"):
            Devnet(port=sock.getsockname()[1]).start()


def _deploy_probe(node: Devnet, artifacts: Path) -> tuple[ChecksumAddress, bytes]:
    w3 = make_web3(node.rpc_url)
    owner = dev_accounts(1)[0]
    artifact = load_artifact("Probe", artifacts)
    sender = Sender(w3, owner)
    address = sender.deploy(artifact.abi, artifact.bytecode, [owner.address])["contractAddress"]
    assert address is not None
    probe = w3.eth.contract(address=address, abi=artifact.abi)
    sender.transact(probe.functions.bump())
    return address, bytes(w3.eth.get_code(address))


def test_state_file_survives_a_restart(tmp_path: Path, probe_artifacts: Path) -> None:
    state = tmp_path / "devnet" / "state.json"
    with Devnet(state_file=state) as node:
        address, code = _deploy_probe(node, probe_artifacts)
        node.mine(5)
        height = node.block_number()
    assert state.exists()
    with Devnet(state_file=state) as node:
        w3 = make_web3(node.rpc_url)
        assert node.block_number() == height
        assert bytes(w3.eth.get_code(address)) == code
        probe = w3.eth.contract(address=address, abi=load_artifact("Probe", probe_artifacts).abi)
        assert probe.functions.counter().call() == 1
        # and the chain goes on from there: nonces were restored too
        Sender(w3, dev_accounts(1)[0]).transact(probe.functions.bump())
        assert probe.functions.counter().call() == 2


def test_state_interval_limits_loss_on_sigkill(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    node = Devnet(state_file=state).start()
    try:
        node.mine(10)
        time.sleep(2.2)  # at least one periodic dump (--state-interval 1)
        assert node.pid is not None
        os.kill(node.pid, signal.SIGKILL)  # no chance to dump on exit
    finally:
        node.stop()
    with Devnet(state_file=state) as restarted:
        assert restarted.block_number() == 10
