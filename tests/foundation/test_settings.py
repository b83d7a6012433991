from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from node.settings import Settings, get_settings


def test_defaults(isolated_cwd: Path) -> None:
    s = Settings()
    assert s.rpc_url == "http://127.0.0.1:8545"
    assert s.chain_id == 31337
    assert s.database_url == "sqlite:///./var/rxledger.db"
    assert s.manifest_dir == Path("deployments")
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8000)
    assert s.keystore_dir == Path("var/keystore")
    assert s.confirmations == 0
    assert s.data_dir == Path("var")
    assert s.devnet_port == 8545
    assert s.devnet_block_time is None
    assert s.devnet_state_file == Path("var/devnet/state.json")
    assert s.log_level == "INFO"


def test_reads_prefixed_env_vars(isolated_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RXLEDGER_RPC_URL", "http://node.example:9545")
    monkeypatch.setenv("RXLEDGER_CHAIN_ID", "1337")
    monkeypatch.setenv("RXLEDGER_MANIFEST_DIR", "/srv/manifests")
    monkeypatch.setenv("RXLEDGER_DEVNET_BLOCK_TIME", "2.5")
    monkeypatch.setenv("RXLEDGER_CONFIRMATIONS", "3")
    monkeypatch.setenv("RXLEDGER_LOG_LEVEL", "debug")
    monkeypatch.setenv("CHAIN_ID", "5")  # unprefixed: ignored
    s = Settings()
    assert s.rpc_url == "http://node.example:9545"
    assert s.chain_id == 1337
    assert s.manifest_dir == Path("/srv/manifests")
    assert s.devnet_block_time == 2.5
    assert s.confirmations == 3
    assert s.log_level == "DEBUG"


def test_reads_dotenv_and_env_wins(isolated_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated_cwd / ".env").write_text("RXLEDGER_API_PORT=9100\nRXLEDGER_DEVNET_PORT=9545\n")
    monkeypatch.setenv("RXLEDGER_DEVNET_PORT", "9646")
    s = Settings()
    assert s.api_port == 9100
    assert s.devnet_port == 9646


@pytest.mark.parametrize(
    ("name", "value"),
    [("RXLEDGER_CHAIN_ID", "zero"), ("RXLEDGER_API_PORT", "70000"), ("RXLEDGER_LOG_LEVEL", "chatty")],
)
def test_rejects_bad_values(
    isolated_cwd: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_get_settings_is_cached(isolated_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    try:
        monkeypatch.setenv("RXLEDGER_CHAIN_ID", "4242")
        first = get_settings()
        monkeypatch.setenv("RXLEDGER_CHAIN_ID", "4343")
        assert get_settings() is first
        assert first.chain_id == 4242
    finally:
        get_settings.cache_clear()
