"""Runtime configuration: one place, read from RXLEDGER_* environment variables or `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
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

    # --- partner API ---
    # Key-encryption password of the custodial keystores (eth-account keystore v3 files in
    # keystore_dir). Never stored in the database; without it the API can only relay signatures.
    keystore_password: SecretStr | None = None
    # scrypt cost of new keystores (2**18 is geth's "standard"; tests lower it to stay fast).
    keystore_scrypt_n: int = Field(default=2**18, ge=2**10)
    documents_dir: Path = Path("var/documents")  # certificate files, content-addressed by SHA-256
    max_request_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    token_ttl_days: int = Field(default=90, gt=0)
    # Failed authentications per client address and window before 429 (api/edge/throttle.py).
    auth_failure_limit: int = Field(default=30, gt=0)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)
    # Reverse proxies whose X-Forwarded-For is believed (IP addresses or CIDR networks, e.g.
    # '["10.0.0.5", "10.1.0.0/16"]'). Empty: the client address is the TCP peer's, whatever a
    # header claims (docs/SECURITY.md, "Client addresses and the throttle").
    trusted_proxies: list[str] = Field(default_factory=list)
    # Wrong credentials re-entered at electronic signature, in a row, before the user's signing is
    # locked until a key admin unlocks it (21 CFR 11.300(d); docs/SECURITY.md).
    signature_failure_limit: int = Field(default=5, gt=0)
    wait_max_seconds: float = Field(default=30.0, gt=0)  # bound of `?wait=true`
    items_per_tx: int = Field(default=500, gt=0, le=1000)  # items per transaction when splitting
    # Submitter: replace a transaction with higher fees when unmined this long; back-off cap.
    submitter_stuck_after: float = Field(default=30.0, gt=0)
    submitter_max_backoff: float = Field(default=30.0, gt=0)
    # Mark an operation succeeded only once the indexer has applied its last block (bounded wait).
    submitter_index_timeout: float = Field(default=30.0, ge=0)
    # Pipelining: how many unfinished operations one step looks at, and how many transactions may be
    # sent and unmined at once (across all keys).
    submitter_window: int = Field(default=2000, gt=0)
    submitter_max_in_flight: int = Field(default=1000, gt=0)
    # Coalescing: at most this many waiting actions of one sender go in one transaction
    # (batchActions, or relayBatch for externally signed ones); 1 sends every action alone.
    submitter_batch_actions: int = Field(default=64, gt=0, le=256)
    # Back-pressure: past this many queued or running operations, writes answer 503 with Retry-After.
    outbox_max_depth: int = Field(default=20_000, gt=0)
    # Wei sent from the admin key to every new custodial key (the submitter offers a nominal fee).
    fund_new_keys_wei: int = Field(default=0, ge=0)
    # Production: the key that deploys the contracts and is their admin (hex private key). Unset on
    # the devnet, whose deployer is Anvil's account 0.
    deployer_key: SecretStr | None = None

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
