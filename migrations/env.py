"""Alembic environment: labbot runs migrations on a connection it hands over (services.db.upgrade)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import services.claims  # registers the claims and locks tables (services.labs.models imports it too)
import services.labs.models  # noqa: F401 - registers the tables on Base.metadata
from services.db import Base

target_metadata = Base.metadata


def _configure_and_run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs batch mode for ALTERs
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    _configure_and_run(connection)
else:
    # Plain `alembic` CLI use: a sync engine for the sync twin of the configured URL.
    url = str(context.config.get_main_option("sqlalchemy.url"))
    sync_url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    with create_engine(sync_url).connect() as sync_connection:
        _configure_and_run(sync_connection)
