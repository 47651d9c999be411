"""Database plumbing: the async engine, the session factory, and the migration gate.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) is the scale-out one. Sessions are opened
per unit of work (``async with sessions() as session``) with ``expire_on_commit=False`` so rows stay usable
after commit; nothing keeps a session open across awaits on remote systems.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from services.errors import ConfigError
from services.files import private_file, sqlite_path

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"

# Stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every labbot table."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both databases (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (the only kind labbot stores)."""
    return datetime.now(UTC)


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url`` with a bounded pool (PostgreSQL) or WAL + foreign keys (SQLite)."""
    kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
    if url.startswith("postgresql"):
        kwargs.update(pool_size=pool_size, max_overflow=5, pool_timeout=30)
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            private_file(path)  # it holds the labs' encrypted secrets and pinned host keys
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


# How long a SQLite write waits for another connection's write to commit before failing with "database is
# locked". SQLite has one writer at a time, and a commit waits for its fsync of the WAL: on a busy disk that can
# take seconds, and 5 s (Python's default) once failed a Slack request in CI. PostgreSQL waits for a row lock
# without limit; 30 s matches the pool's checkout timeout, and the waiting connection sleeps (no CPU).
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The session factory handed around labbot (never an open session)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    return config


def head_revision() -> str:
    """The newest migration revision shipped with this labbot."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise ConfigError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def require_migrated(engine: AsyncEngine) -> None:
    """Refuse to run on a database that is not at the migration head, saying how to fix it."""
    current, head = await current_revision(engine), head_revision()
    if current != head:
        where = "an empty database" if current is None else f"revision {current}"
        raise ConfigError(
            f"the database is at {where}, but this labbot needs revision {head}: run `labbot db upgrade` first"
        )


async def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (what `labbot db upgrade` runs)."""
    await _run_alembic(url, "upgrade", revision)


async def downgrade(url: str, revision: str) -> None:
    """Revert migrations down to ``revision`` (``base`` empties the schema)."""
    await _run_alembic(url, "downgrade", revision)


async def _run_alembic(url: str, direction: str, revision: str) -> None:
    from alembic import command

    config = _alembic_config(url)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            config.attributes["connection"] = None

            def run(sync_conn: Any) -> None:
                config.attributes["connection"] = sync_conn
                getattr(command, direction)(config, revision)

            await conn.run_sync(run)
    finally:
        await engine.dispose()
