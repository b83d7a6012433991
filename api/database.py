"""The API's database: the same engine as the read models (one database per node), with the
API's own tables migrated by their own Alembic history."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from node.indexer.database import migrate as migrate_read_models
from node.indexer.database import read_model_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate_api(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "head")


def api_engine(url: str) -> Engine:
    """An engine with both schemas at their newest revision."""
    engine = read_model_engine(url)
    migrate_read_models(engine)
    migrate_api(engine)
    return engine
