"""Alembic environment of the API's tables: own metadata, own version table (api_alembic_version),
so it shares a database with the indexer's read models without sharing their history."""

from __future__ import annotations

from alembic import context

from api.models import api_metadata

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=api_metadata,
        render_as_batch=True,
        version_table="api_alembic_version",
    )
    with context.begin_transaction():
        context.run_migrations()
