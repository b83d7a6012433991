"""The API's database: the same engine as the read models (one database per node), with the
API's own tables migrated by their own Alembic history."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from node.indexer.database import migrate as migrate_read_models
from node.indexer.database import read_model_engine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate_api(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "head")


def api_engine(url: str, *, tolerate_unreachable: bool = False) -> Engine:
    """An engine with both schemas at their newest revision. With `tolerate_unreachable` a database
    that cannot be reached now is logged, not raised (the API then starts and reports it in /health)."""
    engine = read_model_engine(url)
    try:
        migrate_read_models(engine)
        migrate_api(engine)
    except OperationalError:
        if not tolerate_unreachable:
            raise
        log.error("database unreachable at start; schemas not migrated", exc_info=True)
    return engine
