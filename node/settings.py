"""Runtime configuration: one place, read from RXLEDGER_* environment variables or `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of a node/API process. Defaults bring up a local devnet with SQLite."""

    model_config = SettingsConfigDict(
        env_prefix="RXLEDGER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",  # a shared .env may hold variables for other tools
    )

    rpc_url: str = "http://127.0.0.1:8545"
    chain_id: int = Field(default=31337, gt=0)
    database_url: str = "sqlite:///./var/rxledger.db"
    manifest_dir: Path = Path("deployments")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    keystore_dir: Path = Path("var/keystore")
    # Blocks to wait before the indexer treats a block as final (0 on an instant-finality devnet).
    confirmations: int = Field(default=0, ge=0)
    data_dir: Path = Path("var")
    devnet_port: int = Field(default=8545, ge=0, le=65535)
    # None = automine (a block per transaction, instantly); a number = interval mining in seconds.
    devnet_block_time: float | None = Field(default=None, gt=0)
    devnet_state_file: Path = Path("var/devnet/state.json")
    log_level: str = "INFO"

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}:
            raise ValueError(f"unknown log level {value!r}")
        return level


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests build `Settings(...)` directly instead."""
    return Settings()
