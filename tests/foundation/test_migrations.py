"""Migrations: empty → head → base on both databases, and the models agree with the head."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import services.labs.models  # noqa: F401
from services import db
from services.errors import ConfigError


def _tables(sync_conn: object) -> set[str]:
    return set(inspect(sync_conn).get_table_names()) - {"alembic_version"}


async def test_upgrade_then_downgrade(empty_database_url: str) -> None:
    engine = db.make_engine(empty_database_url)
    try:
        with pytest.raises(ConfigError, match="labbot db upgrade"):
            await db.require_migrated(engine)
        await db.upgrade(empty_database_url)
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == {"labs", "lab_steps", "lab_events", "host_keys", "health_checks",
                                                      "claims", "locks", "lab_classes"}
        await db.require_migrated(engine)
        await db.downgrade(empty_database_url, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()
        assert await db.current_revision(engine) is None
    finally:
        await engine.dispose()


async def test_models_match_migration_head(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), db.Base.metadata
                )
            )
        assert diff == []
    finally:
        await engine.dispose()
