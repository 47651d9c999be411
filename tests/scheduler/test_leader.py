"""The scheduler and its election: one leader on PostgreSQL, takeover when the leader's connection is lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from services.scheduler.election import asyncpg_dsn
from services.scheduler.leader import ScheduledJob, Scheduler
from tests.conftest import create_pg_database, drop_pg_database, require_postgres

TICK = 0.1


@dataclass
class Recorder:
    """Jobs that note which scheduler ran them, optionally holding on (to be cancelled)."""

    calls: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def jobs(self, owner: str, *, hold: float = 0.0, fail: bool = False) -> list[ScheduledJob]:
        async def run() -> None:
            self.calls.append(owner)
            if fail:
                raise RuntimeError("the job broke")
            try:
                await asyncio.sleep(hold)
            except asyncio.CancelledError:
                self.cancelled.append(owner)
                raise

        return [ScheduledJob("tick", timedelta(seconds=TICK), run)]


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (polling), or fail the test."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database (the election needs no tables)."""
    await require_postgres()
    url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(url)


async def test_on_sqlite_the_process_just_runs_the_jobs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.scheduler.leader")
    recorder = Recorder()
    scheduler = Scheduler(recorder.jobs("solo"), database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
                          name="solo", check_seconds=TICK)
    await scheduler.start()
    try:
        assert scheduler.is_leader
        await eventually(lambda: len(recorder.calls) >= 3)
        status = scheduler.status()
        assert status["running"] and status["leader"] and status["mode"] == "single-process (SQLite)"
        assert set(status["jobs"]) == {"tick"}
    finally:
        await scheduler.stop()
    assert "a single labbot process is the supported mode on SQLite" in caplog.text
    runs = len(recorder.calls)
    await asyncio.sleep(3 * TICK)
    assert len(recorder.calls) == runs and not scheduler.is_leader


async def test_a_disabled_scheduler_runs_nothing(tmp_path: Path) -> None:
    recorder = Recorder()
    scheduler = Scheduler(recorder.jobs("off"), database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
                          name="off", enabled=False)
    await scheduler.start()
    await asyncio.sleep(3 * TICK)
    status = scheduler.status()
    assert recorder.calls == [] and status["enabled"] is False and not status["leader"]
    assert status["running"] is True  # switched off on purpose: nothing is down
    await scheduler.stop()


async def test_a_failing_job_runs_again_and_does_not_stop_the_scheduler(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    scheduler = Scheduler(recorder.jobs("oops", fail=True), database_url=f"sqlite+aiosqlite:///{tmp_path / 'x'}",
                          name="oops")
    await scheduler.start()
    try:
        await eventually(lambda: len(recorder.calls) >= 3)
    finally:
        await scheduler.stop()
    assert "scheduled job tick failed; it runs again at its next interval" in caplog.text


@pytest.mark.postgres
async def test_one_leader_and_a_takeover_when_its_connection_is_lost(pg_url: str) -> None:
    recorder = Recorder()
    a = Scheduler(recorder.jobs("A", hold=30), database_url=pg_url, name="A", check_seconds=TICK)
    b = Scheduler(recorder.jobs("B", hold=30), database_url=pg_url, name="B", check_seconds=TICK)
    both: list[bool] = []

    async def watch() -> None:
        while True:
            both.append(a.is_leader and b.is_leader)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    await a.start()
    await eventually(lambda: a.is_leader)
    await b.start()
    try:
        await asyncio.sleep(5 * TICK)
        assert a.is_leader and not b.is_leader and set(recorder.calls) == {"A"}
        assert b.status()["running"] and not b.status()["leader"]

        conn = await asyncpg.connect(asyncpg_dsn(pg_url))
        try:
            killed = await conn.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                         "WHERE application_name = 'labbot-scheduler A'")
        finally:
            await conn.close()
        assert killed == 1
        await eventually(lambda: not a.is_leader, timeout=2 * TICK + 5)
        assert recorder.cancelled == ["A"]  # its running job was stopped with the leadership
        await eventually(lambda: b.is_leader, timeout=3 * TICK + 5)
        await eventually(lambda: "B" in recorder.calls)
        await asyncio.sleep(5 * TICK)
        assert not a.is_leader  # A stood down and stays a follower while B holds the lock
    finally:
        watcher.cancel()
        await a.stop()
        await b.stop()
    # PostgreSQL frees a terminated backend's locks a moment before its socket closes, so B may win the lock
    # just before A sees its connection gone: allowed for at most A's next check, never longer.
    longest = max((len(run) for run in "".join("x" if b else " " for b in both).split()), default=0)
    assert longest * 0.005 <= 2 * TICK, longest


@pytest.mark.postgres
async def test_stopping_the_leader_hands_over_within_one_interval(pg_url: str) -> None:
    recorder = Recorder()
    a = Scheduler(recorder.jobs("A"), database_url=pg_url, name="A", check_seconds=TICK)
    b = Scheduler(recorder.jobs("B"), database_url=pg_url, name="B", check_seconds=TICK)
    await a.start()
    await eventually(lambda: a.is_leader)
    await b.start()
    try:
        await a.stop()
        loop = asyncio.get_running_loop()
        stopped = loop.time()
        await eventually(lambda: b.is_leader, timeout=5)
        # Handed over at B's next check, not after the lock connection's keepalive (25 s); the margin is for
        # a loaded machine, not a speed target.
        assert loop.time() - stopped < 5
    finally:
        await a.stop()
        await b.stop()


async def test_an_unreachable_database_leaves_a_follower_that_keeps_trying(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="services.scheduler.leader")
    recorder = Recorder()
    scheduler = Scheduler(recorder.jobs("lost"), database_url="postgresql+asyncpg://labbot@127.0.0.1:9/labbot",
                          name="lost", check_seconds=TICK)
    await scheduler.start()
    try:
        await eventually(lambda: caplog.text.count("cannot reach the database") >= 3)
        assert not scheduler.is_leader and scheduler.status()["running"] and recorder.calls == []
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "cannot reach" in r.message]
        assert len(warnings) == 1  # said once, not every interval
    finally:
        await scheduler.stop()
