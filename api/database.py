"""The API's database: the same engine as the read models (one database per node), with the
API's own tables migrated by their own Alembic history."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from node.indexer.database import migrate as migrate_read_models
from node.indexer.database import read_model_engine

log = logging.getLogger(__name__)
T = TypeVar("T")
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


async def read_on_loop_or_thread(engine: Engine, fn: Callable[..., T], *args: Any) -> T:
    """Run a short read of the hot path: on the event loop for SQLite (a local file, tens of
    microseconds: a thread hop costs more), in a worker thread for a database across the network
    (a synchronous round trip on the loop would hold every other request of the worker)."""
    if engine.dialect.name == "sqlite":
        return fn(*args)
    return await asyncio.to_thread(fn, *args)
