"""The layout docs/ARCHITECTURE.md draws is the one the code has: import-linter checks the contracts
in pyproject.toml ([tool.importlinter]) against the real import graph."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from node.paths import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_import_contract_is_kept() -> None:
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout, result.stdout


def test_a_forbidden_import_breaks_the_contract(tmp_path: Path) -> None:
    """The same kind of contract on a tree that breaks it: the check can fail."""
    for package in ("api", "bench"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "bench" / "figures.py").write_text("VALUE = 1\n")
    (tmp_path / "api" / "app.py").write_text("from bench.figures import VALUE\n")
    (tmp_path / "setup.cfg").write_text(
        "[importlinter]\nroot_packages =\n    api\n    bench\n\n"
        "[importlinter:contract:no-bench]\nname = The product never imports the benchmarks\n"
        "type = forbidden\nsource_modules =\n    api\nforbidden_modules =\n    bench\n"
    )
    result = lint_imports(tmp_path, "--config", "setup.cfg")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "api.app -> bench.figures" in result.stdout
