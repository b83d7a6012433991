"""The migrations create exactly the tables the models declare (for the API's tables and the
indexer's read models, each with its own Alembic history), on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect
from sqlmodel import SQLModel

import node.indexer.schema  # noqa: F401  (registers the read models on SQLModel.metadata)
from api.database import api_engine
from api.models import api_metadata
from node.indexer.pgtemp import TempPostgres


def drift(engine: Engine, metadata: MetaData, version_table: str) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": version_table, "compare_type": True}
        )
        return [d for d in compare_metadata(context, metadata) if not _other_stream(d, metadata)]


def _other_stream(diff: object, metadata: MetaData) -> bool:
    """Tables (and their indexes) of the other migration stream show as removals here; not drift."""
    if not isinstance(diff, tuple):
        return False
    if diff[0] == "remove_table":
        return diff[1].name not in metadata.tables
    if diff[0] == "remove_index":
        return diff[1].table.name not in metadata.tables
    return False


def check(engine: Engine) -> None:
    assert drift(engine, api_metadata, "api_alembic_version") == []
    assert drift(engine, SQLModel.metadata, "alembic_version") == []
    tables = set(inspect(engine).get_table_names())
    assert {"api_alembic_version", "alembic_version"} <= tables
    assert not set(api_metadata.tables) & set(SQLModel.metadata.tables)  # two separate schemas


def test_sqlite_schema_matches_the_models(tmp_path: Path) -> None:
    check(api_engine(f"sqlite:///{tmp_path}/m.db"))


def test_postgres_schema_matches_the_models(postgres_server: TempPostgres) -> None:
    engine = api_engine(postgres_server.database_url("rx_api_migrations"))
    try:
        check(engine)
    finally:
        engine.dispose()


def test_migrating_again_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    api_engine(url).dispose()
    check(api_engine(url))
