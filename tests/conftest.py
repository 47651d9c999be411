"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, each fresh per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import db

PG_ADMIN_URL = os.environ.get("LABBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_HINT = (
    "PostgreSQL is not reachable at 127.0.0.1:5432; start it with "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` (CI requires it)"
)


async def _pg_reachable() -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


_PG_OK: bool | None = None


async def require_postgres() -> None:
    """Skip (or, in CI, fail) when PostgreSQL is not there."""
    global _PG_OK
    if _PG_OK is None:
        _PG_OK = await _pg_reachable()
    if not _PG_OK:
        if os.environ.get("LABBOT_REQUIRE_POSTGRES") or os.environ.get("CI"):
            pytest.fail(PG_HINT)
        pytest.skip(PG_HINT)


async def create_pg_database() -> str:
    """A new empty PostgreSQL database; returns its asyncpg URL."""
    import asyncpg

    name = f"labbot_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"


async def drop_pg_database(url: str) -> None:
    """Drop a database made by create_pg_database (forcing out leftover connections)."""
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def on_database(kind: str) -> pytest.MarkDecorator:
    """Run a test on one database instead of both.

    For the tests that build whole labs in the lab-in-a-box to test something other than the database (baking,
    pools, isolation, exercises, retries, host keys): each costs 20-40 s per run, and the database layer under
    them is tested on both databases by the repository, lifecycle and end-to-end tests. They alternate, so
    each database builds labs of every kind.
    """
    param = pytest.param("postgres", marks=pytest.mark.postgres) if kind == "postgres" else kind
    if kind not in ("sqlite", "postgres"):
        raise ValueError(f"no database {kind!r}")
    return pytest.mark.parametrize("empty_database_url", [param], indirect=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh, empty database of each kind; removed afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}"
        return
    await require_postgres()
    url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(url)


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A fresh database of each kind, migrated to head."""
    await db.upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a fresh migrated database of each kind."""
    engine = db.make_engine(database_url)
    try:
        yield db.make_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database at the migration head, for tests of several labbot processes sharing one."""
    await require_postgres()
    url = await create_pg_database()
    await db.upgrade(url)
    try:
        yield url
    finally:
        await drop_pg_database(url)


@pytest.fixture(autouse=True)
def _english_by_default():
    """Each test starts in English with no remembered missing translations (a Runtime sets the process default)."""
    from services import i18n

    i18n.set_default_language(i18n.ENGLISH)
    i18n.forget_missing()
    yield
    i18n.set_default_language(i18n.ENGLISH)
