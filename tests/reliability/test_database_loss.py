"""A database connection lost under a step (PostgreSQL restarted, or the backend terminated) is a transient
failure: the step runs again instead of failing the lab with "unexpected InternalError". Found by the network
fault run that terminates labbot's backends mid-build; here on a real PostgreSQL, idle and mid-query."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services import db
from services.labs.build.pipeline import is_transient
from services.scheduler.election import asyncpg_dsn
from tests.conftest import create_pg_database, drop_pg_database, require_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture
async def engine() -> AsyncIterator[tuple[AsyncEngine, str]]:
    await require_postgres()
    url = await create_pg_database()
    engine = db.make_engine(url)
    try:
        yield engine, url
    finally:
        await engine.dispose()
        await drop_pg_database(url)


async def _terminate_others(url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    finally:
        await conn.close()


async def test_a_connection_terminated_while_idle_is_transient(engine: tuple[AsyncEngine, str]) -> None:
    eng, url = engine
    async with eng.connect() as conn:
        await conn.execute(text("SELECT 1"))
        assert await _terminate_others(url) == 1
        with pytest.raises(DBAPIError) as caught:
            await conn.execute(text("SELECT 1"))
    assert is_transient(caught.value)


async def test_a_connection_terminated_mid_query_is_transient(engine: tuple[AsyncEngine, str]) -> None:
    eng, url = engine
    async with eng.connect() as conn:
        query = asyncio.create_task(conn.execute(text("SELECT pg_sleep(5)")))
        await asyncio.sleep(0.5)
        assert await _terminate_others(url) == 1
        with pytest.raises(DBAPIError) as caught:
            await query
    assert is_transient(caught.value)


async def test_a_query_error_is_not_transient(engine: tuple[AsyncEngine, str]) -> None:
    eng, _ = engine
    async with eng.connect() as conn:
        with pytest.raises(DBAPIError) as caught:
            await conn.execute(text("SELECT * FROM no_such_table"))
    assert not is_transient(caught.value)
