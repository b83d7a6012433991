"""Database engine construction shared by the indexer (writer) and the API (reader)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url


def normalize_url(url: str) -> URL:
    """Plain `postgresql://` would pick psycopg2, which we do not ship; we ship psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


# As many connections as FastAPI's thread pool runs requests (40): SQLAlchemy's default (5 + 10
# overflow) made busy workers open and close connections on every request (measured: 0.45 per
# request at 32 in flight; on PostgreSQL each one a new backend process).
POOL: dict[str, int] = {"pool_size": 20, "max_overflow": 20}


def make_engine(url: str, *, connect_timeout: float = 3.0) -> Engine:
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)  # sqlite will not create var/
        return create_engine(parsed, connect_args={"timeout": connect_timeout}, **POOL)
    return create_engine(
        parsed, pool_pre_ping=True, connect_args={"connect_timeout": int(connect_timeout)}, **POOL
    )


def ping(engine: Engine) -> None:
    """SELECT 1; raises the driver's error when the database is unreachable."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
