"""Pidfile and process helpers for `rxledger up` / `rxledger down`."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of `pid` from /proc, None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def process_start_time(pid: int) -> int | None:
    """Kept in the pidfile so that a PID reused by an unrelated process is not mistaken for ours."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def alive(pid: int, start_time: int | None = None) -> bool:
    if not Path("/proc/self/stat").exists():  # no procfs: fall back to a signal-0 probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):  # gone, or a zombie nobody reaped yet
        return False
    return start_time is None or stat[1] == start_time


@dataclass(frozen=True)
class UpRecord:
    """What `up` writes to its pidfile so that `down` (another process) can stop it."""

    pid: int
    start_time: int | None
    anvil_pid: int | None
    anvil_start_time: int | None
    rpc_url: str
    api_url: str

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> UpRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @property
    def running(self) -> bool:
        return alive(self.pid, self.start_time)


def terminate(pid: int, start_time: int | None, *, grace: float) -> bool:
    """SIGTERM, then SIGKILL after `grace` seconds. True if the process is gone afterwards."""
    if not alive(pid, start_time):
        return True
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid, start_time):
            return True
        time.sleep(0.05)
    if alive(pid, start_time):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    return not alive(pid, start_time)
