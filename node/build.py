"""Build contract artifacts with the pinned solc-js (via scripts/compile-contracts.mjs) or check them.

The Node script is the single compiler driver: Python only runs it and, in check mode, compares its
fresh output byte for byte with the committed artifacts, so CI catches sources changed without a rebuild.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from node.paths import ARTIFACTS_DIR, COMPILE_SCRIPT, CONTRACTS_SRC


class CompileFailed(RuntimeError):
    pass


class ArtifactsOutOfDate(RuntimeError):
    def __init__(self, artifacts_dir: Path, differences: list[str]) -> None:
        lines = "\n".join(f"  - {d}" for d in differences)
        super().__init__(
            f"committed artifacts in {artifacts_dir} differ from a fresh build:\n{lines}\n"
            "rebuild them with `make contracts` and commit the result"
        )
        self.differences = differences


def _run_compiler(src_dir: Path, out_dir: Path, *, quiet: bool, timeout: float) -> str:
    node = shutil.which("node")
    if node is None:
        raise CompileFailed("`node` not found on PATH (Node >= 20 is required to compile contracts)")
    cmd = [node, str(COMPILE_SCRIPT), "--src", str(src_dir), "--out", str(out_dir)]
    if quiet:
        cmd.append("--quiet")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise CompileFailed(f"contract compilation failed:\n{proc.stderr.strip()}")
    return proc.stdout + proc.stderr


def _changed_keys(a: bytes, b: bytes) -> str:
    """Name the top-level JSON members that differ, which says more than 'file differs'."""
    try:
        left, right = json.loads(a), json.loads(b)
    except ValueError:
        return "content differs"
    if not isinstance(left, dict) or not isinstance(right, dict):
        return "content differs"
    keys = sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))
    return f"differs in {', '.join(keys)}" if keys else "formatting differs"


def compare_dirs(expected: Path, actual: Path) -> list[str]:
    """Differences between two artifact dirs (expected = fresh build, actual = committed)."""
    fresh = {p.name: p for p in expected.glob("*.json")}
    committed = {p.name: p for p in actual.glob("*.json")} if actual.is_dir() else {}
    differences = [f"{name}: missing from {actual}" for name in sorted(fresh.keys() - committed.keys())]
    differences += [f"{name}: stale (no such contract)" for name in sorted(committed.keys() - fresh.keys())]
    for name in sorted(fresh.keys() & committed.keys()):
        new, old = fresh[name].read_bytes(), committed[name].read_bytes()
        if new != old:
            differences.append(f"{name}: {_changed_keys(new, old)}")
    return differences


def build_contracts(
    check: bool = False,
    *,
    src_dir: Path | None = None,
    out_dir: Path | None = None,
    quiet: bool = True,
    timeout: float = 300.0,
) -> str:
    """Compile into `out_dir` (default contracts/artifacts), or with check=True compile into a temp
    dir and raise ArtifactsOutOfDate unless `out_dir` holds exactly the same bytes. Returns the
    compiler's console output."""
    src = src_dir or CONTRACTS_SRC
    out = out_dir or ARTIFACTS_DIR
    if not check:
        return _run_compiler(src, out, quiet=quiet, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="rxledger-artifacts-") as tmp:
        log = _run_compiler(src, Path(tmp), quiet=quiet, timeout=timeout)
        differences = compare_dirs(Path(tmp), out)
    if differences:
        raise ArtifactsOutOfDate(out, differences)
    return log
