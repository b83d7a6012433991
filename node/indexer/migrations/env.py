"""Alembic environment: runs against the engine handed over in config.attributes."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import node.indexer.schema  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
