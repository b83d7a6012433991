"""Fixtures for the foundation tests (build, devnet, chain, deployer, API, CLI)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.build import build_contracts
from node.settings import Settings

PROBE_SRC = Path(__file__).parent / "solidity"


@pytest.fixture(autouse=True)
def _no_rxledger_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own RXLEDGER_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("RXLEDGER_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def probe_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test-only Probe contract compiled by our compile script (fast: one small source)."""
    out = tmp_path_factory.mktemp("probe-artifacts")
    build_contracts(src_dir=PROBE_SRC, out_dir=out)
    return out


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings confined to `tmp_path`, ignoring any .env file."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'var' / 'rxledger.db'}",
        "manifest_dir": tmp_path / "deployments",
        "data_dir": tmp_path / "var",
        "keystore_dir": tmp_path / "var" / "keystore",
        "devnet_state_file": tmp_path / "var" / "devnet" / "state.json",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
