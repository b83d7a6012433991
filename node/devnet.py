"""Run an Anvil devnet as a child process that never outlives us.

Traps handled here (see TOOLCHAIN-NOTES): the native binary, not the Node wrapper, so the PID we
signal is Anvil's; `--prune-history` and a private `--cache-path` that we delete, or Anvil fills the
disk; PR_SET_PDEATHSIG so the child dies with us even on SIGKILL; `--state-interval 1` so a killed
run loses at most a second of chain state.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from node.accounts import DEV_ACCOUNT_COUNT, DEV_MNEMONIC
from node.paths import ANVIL_BIN
from node.settings import Settings

DEFAULT_GAS_LIMIT = 300_000_000  # batch transactions are large; Anvil's default is 30M
PR_SET_PDEATHSIG = 1


class DevnetError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on the port. SO_REUSEADDR as Anvil uses it, so leftover TIME_WAIT
    connections of a previous run do not count as busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _pdeathsig_preexec() -> Any:
    """A preexec_fn that makes the child get SIGKILL when the parent dies (Linux only).

    The kernel sends it when the *thread* that forked exits, so start devnets from a long-lived
    thread (the main thread in practice)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # parent died between fork and prctl
            os._exit(1)

    return preexec


class Devnet:
    """An Anvil child process. Use as a context manager, or call start()/stop()."""

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        chain_id: int = 31337,
        block_time: float | None = None,
        state_file: Path | None = None,
        gas_limit: int = DEFAULT_GAS_LIMIT,
        mnemonic: str = DEV_MNEMONIC,
        accounts: int = DEV_ACCOUNT_COUNT,
        balance_eth: int = 10_000,
        log_file: Path | None = None,
        anvil_bin: Path | None = None,
        startup_timeout: float = 15.0,
        stop_grace: float = 10.0,
        extra_args: Sequence[str] = (),
        prune_history: bool = True,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port = port
        self.chain_id = chain_id
        self.block_time = block_time
        self.state_file = state_file
        self.gas_limit = gas_limit
        self.mnemonic = mnemonic
        self.accounts = accounts
        self.balance_eth = balance_eth
        self.log_file = log_file
        self.anvil_bin = anvil_bin or ANVIL_BIN
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.extra_args = tuple(extra_args)
        # Off only for small test chains that need anvil_reorg (it rebuilds from historical states);
        # without pruning Anvil keeps a state snapshot per block on disk (TOOLCHAIN-NOTES).
        self.prune_history = prune_history
        self._proc: subprocess.Popen[bytes] | None = None
        self._cache_dir: Path | None = None
        self._log_path: Path | None = None
        self._http: httpx.Client | None = None
        self._ids = itertools.count(1)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Devnet:
        options: dict[str, Any] = {
            "port": settings.devnet_port,
            "chain_id": settings.chain_id,
            "block_time": settings.devnet_block_time,
            "state_file": settings.devnet_state_file,
        }
        options.update(overrides)
        return cls(**options)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def command(self) -> list[str]:
        cmd = [
            str(self.anvil_bin),
            "--host", self.host,
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--mnemonic", self.mnemonic,
            "--accounts", str(self.accounts),
            "--balance", str(self.balance_eth),
            "--gas-limit", str(self.gas_limit),
        ]  # fmt: skip
        if self.prune_history:
            cmd.append("--prune-history")
        if self._cache_dir is not None:
            cmd += ["--cache-path", str(self._cache_dir)]
        if self.block_time is not None:
            cmd += ["--block-time", f"{self.block_time:g}"]
        if self.state_file is not None:
            cmd += ["--state", str(self.state_file), "--state-interval", "1"]
        return cmd + list(self.extra_args)

    def start(self) -> Self:
        if self._proc is not None:
            raise DevnetError("devnet already started")
        if not self.anvil_bin.exists():
            raise DevnetError(f"anvil not found at {self.anvil_bin}; run `npm ci` (or `make bootstrap`)")
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
        attempts = 3 if self.requested_port == 0 else 1
        for attempt in range(attempts):
            self.port = self.requested_port or free_port(self.host)
            if not port_is_free(self.port, self.host):
                raise DevnetError(f"port {self.port} is already in use (another devnet running?)")
            try:
                self._spawn()
                self._wait_ready()
                return self
            except DevnetError:
                log_tail = self.log_tail()
                self.stop()
                # A free port picked by us can be taken before Anvil binds it: retry on a new one.
                if attempt + 1 < attempts and "in use" in log_tail:
                    continue
                raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        self._cache_dir = Path(tempfile.mkdtemp(prefix="rxledger-anvil-"))
        self._log_path = self.log_file or self._cache_dir / "anvil.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        # Output goes to a file, not a pipe that nobody drains (a full pipe would block Anvil).
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_pdeathsig_preexec(),
                start_new_session=True,  # Ctrl-C in the terminal reaches us; we stop Anvil in order
            )
        self._http = httpx.Client(timeout=5.0)
        atexit.register(self.stop)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise DevnetError(
                    f"anvil exited with code {self._proc.returncode} during start-up:\n{self.log_tail()}"
                )
            try:
                chain_id = int(self.rpc("eth_chainId", timeout=0.5), 16)
            except (httpx.HTTPError, DevnetError):
                if time.monotonic() > deadline:
                    raise DevnetError(
                        f"anvil did not answer on {self.rpc_url} within {self.startup_timeout}s:\n"
                        f"{self.log_tail()}"
                    ) from None
                time.sleep(0.02)
                continue
            if chain_id != self.chain_id:
                raise DevnetError(f"devnet answered with chain id {chain_id}, expected {self.chain_id}")
            return

    def stop(self) -> int | None:
        """SIGTERM (Anvil dumps --state on it), SIGKILL after the grace period. Idempotent."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            code = proc.returncode
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            self._cache_dir = None
        return code

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    # -- JSON-RPC helpers ---------------------------------------------------------------------

    def rpc(self, method: str, params: Sequence[Any] = (), *, timeout: float | None = None) -> Any:
        """One raw JSON-RPC call (no web3 needed, so this works while web3 is misconfigured)."""
        if self._http is None:
            raise DevnetError("devnet is not running")
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        response = self._http.post(self.rpc_url, json=payload, timeout=timeout or 10.0)
        response.raise_for_status()
        body = response.json()
        if "error" in body:
            raise DevnetError(f"{method} failed: {body['error']}")
        return body["result"]

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def snapshot(self) -> str:
        """evm_snapshot: an id to revert to. Anvil drops the snapshot (and later ones) on revert."""
        snapshot_id: str = self.rpc("evm_snapshot")
        return snapshot_id

    def revert(self, snapshot_id: str) -> None:
        if not self.rpc("evm_revert", [snapshot_id]):
            raise DevnetError(f"evm_revert({snapshot_id}) failed: unknown snapshot id")

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", [hex(blocks)])
