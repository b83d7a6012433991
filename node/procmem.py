"""Memory of running processes, from /proc (Linux): what the benchmarks report as peak memory.

`VmHWM` is the kernel's high-water mark of a process's resident set, so a peak is read once, at the
end, instead of sampled (a sampler misses short spikes)."""

from __future__ import annotations

from pathlib import Path

_KIB_PER_MIB = 1024


def _status_kib(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident set so far (VmHWM), or None if it is gone."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib / _KIB_PER_MIB


def rss_mib(pid: int) -> float | None:
    """The process's resident set now (VmRSS), or None if it is gone."""
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib / _KIB_PER_MIB


def group_pids(pgid: int) -> list[int]:
    """Live processes of a process group (uvicorn's supervisor and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def group_peak_rss_mib(pgid: int) -> float:
    """The largest peak resident set among a process group's live processes: per worker, the figure
    that sizes a server (workers do not share what they allocate)."""
    return max((p for p in map(peak_rss_mib, group_pids(pgid)) if p is not None), default=0.0)
