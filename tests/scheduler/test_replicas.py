"""Two real ``labbot worker`` processes on one PostgreSQL database: the scale-out path, end to end.

Each lab is provisioned once, each expiry acted on once (also with ``labbot sweep`` racing the leader), the
leader killed with SIGKILL mid-build → the other process takes the scheduler over and finishes the dead
process's builds after their leases run out: no double destroy, no lost lab. Everything is asserted on the
database: lab states, and the audit events the rehearsal jobs and the sweeps write.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from sandbox.zstack_sim.server import RunningSimulator
from services import db
from services.db import utcnow
from services.labs import repository as repo
from services.labs.models import Lab, LabEvent, LabState
from services.labs.notifier import RecordingNotifier
from services.labs.service import Actor, LabService
from services.scheduler.election import asyncpg_dsn
from tests.fakes.keys import SECRET_KEY
from tests.scheduler.conftest import PROFILES

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def worker_env(pg_url: str, outer_sim: RunningSimulator) -> dict[str, str]:
    """The environment of every labbot process in the test: one database, fast intervals, short leases."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LABBOT_"))}
    env.update({
        "LABBOT_DATABASE_URL": pg_url, "LABBOT_PLATFORM_URL": outer_sim.url, "LABBOT_DEFAULT_PROFILE": "sandbox",
        "LABBOT_SECRET_KEY": SECRET_KEY,
        "LABBOT_EXPIRY_INTERVAL_SECONDS": "5", "LABBOT_EXPIRY_WARNING_OFFSETS": "30m",
        "LABBOT_LEADER_CHECK_SECONDS": "0.3", "LABBOT_LEASE_SECONDS": "10", "LABBOT_HEALTH_INTERVAL_MINUTES": "60",
        "LABBOT_ORPHAN_INTERVAL_MINUTES": "60", "LABBOT_REHEARSAL_BUILD_SECONDS": "2.5", "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start ``labbot worker`` processes (rehearsal jobs, fast polling); all are killed at the end."""
    started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "worker", "--poll-seconds", "0.3",
             "--jobs", "tests.scheduler.rehearsal:jobs"],
            cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT)
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


async def leader_pid(url: str) -> int | None:
    """The OS pid of the process whose scheduler holds the advisory lock (from its application_name)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        name = await conn.fetchval(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    finally:
        await conn.close()
    return int(name.removeprefix("labbot-scheduler ").split(":")[1]) if name else None


async def until(check: Callable[[], Awaitable[object]], what: str, timeout: float = 30.0) -> None:
    """Poll ``check`` until it returns something true; fail naming ``what`` was awaited."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout}s waiting for: {what}")


async def run_labbot(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run one ``labbot`` command to completion (without blocking the loop serving the simulator)."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", *args, cwd=ROOT, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, output.decode(errors="replace")


async def states(sessions: Sessions, names: list[str]) -> dict[str, str]:
    async with sessions() as session:
        rows = await session.execute(select(Lab.name, Lab.state).where(Lab.name.in_(names)))
        return dict(rows.tuples().all())


async def event_counts(sessions: Sessions, kind: str) -> dict[str, int]:
    """How many events of ``kind`` each lab has."""
    async with sessions() as session:
        rows = await session.execute(select(Lab.name, func.count(LabEvent.id)).join(LabEvent, LabEvent.lab_id == Lab.id)
                                     .where(LabEvent.kind == kind).group_by(Lab.name))
        return dict(rows.tuples().all())


async def set_expiry(sessions: Sessions, names: list[str], delta: timedelta) -> None:
    for name in names:
        for _ in range(20):  # the workers write these labs too; retry a lost optimistic lock
            try:
                async with sessions() as session, session.begin():
                    lab = await repo.get_live_by_name(session=session, name=name)
                    lab.expires_at = utcnow() + delta
                    await repo.save(session=session)
                break
            except Exception:
                await asyncio.sleep(0.05)


async def test_two_workers_share_the_labs_and_survive_the_leader_dying(
    pg_url: str, worker_env: dict[str, str], workers: Callable[[str], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    engine = db.make_engine(pg_url)
    sessions = db.make_sessionmaker(engine)
    settings = Settings(database_url=pg_url, default_profile="sandbox", max_labs_per_user=20, max_labs_total=40,
                        secret_key=SECRET_KEY)
    service = LabService(sessions=sessions, settings=settings, profiles=PROFILES, notifier=RecordingNotifier())
    first, second = workers("w1"), workers("w2")
    try:
        await until(lambda: leader_pid(pg_url), "a leader")

        # Six labs, claimed by whichever worker polls first: each is built exactly once.
        batch = [f"lab{i}" for i in range(6)]
        for name in batch:
            await service.create(Actor(f"U{name}"), name=name)

        async def all_in(names: list[str], state: LabState) -> bool:
            return set((await states(sessions, names)).values()) == {state.value}

        await until(lambda: all_in(batch, LabState.READY), "first batch ready")
        assert await event_counts(sessions, "rehearsal:built") == dict.fromkeys(batch, 1)

        # Expiry warnings and destroys, with `labbot sweep` racing the leader's own expiry sweep.
        await set_expiry(sessions, batch[:3], timedelta(minutes=10))
        code, output = await run_labbot(worker_env, "sweep", "--only", "expiry")
        assert code == 0, output
        await until(lambda: all_in(batch[:3], LabState.EXPIRING), "warned")
        await set_expiry(sessions, batch[:3], timedelta(minutes=-1))
        await until(lambda: all_in(batch[:3], LabState.DESTROYED), "expired labs destroyed")

        # The leader takes a new batch alone (the other worker is paused), then dies mid-build.
        leader = await leader_pid(pg_url)
        dying, survivor = (first, second) if leader == first.pid else (second, first)
        assert leader == dying.pid
        survivor.send_signal(signal.SIGSTOP)
        late = [f"late{i}" for i in range(3)]
        try:
            for name in late:
                await service.create(Actor(f"U{name}"), name=name)
            await until(lambda: all_in(late, LabState.PROVISIONING), "late batch building")
        finally:
            survivor.send_signal(signal.SIGCONT)
        dying.kill()
        await asyncio.to_thread(dying.wait, 10)
        assert (await states(sessions, late)) == dict.fromkeys(late, "provisioning")

        async def survivor_leads() -> bool:
            return await leader_pid(pg_url) == survivor.pid

        await until(survivor_leads, "the survivor leads", timeout=10)
        await until(lambda: all_in(late, LabState.READY), "dead worker's labs rebuilt after its leases", timeout=40)

        # Everything left expires; the survivor alone destroys it.
        rest = batch[3:] + late
        await set_expiry(sessions, rest, timedelta(minutes=-1))
        await until(lambda: all_in(rest, LabState.DESTROYED), "everything destroyed")

        everyone = batch + late
        assert await event_counts(sessions, "rehearsal:built") == dict.fromkeys(everyone, 1)
        assert await event_counts(sessions, "rehearsal:destroyed") == dict.fromkeys(everyone, 1)
        assert await event_counts(sessions, "state:destroying") == dict.fromkeys(everyone, 1)
        assert await event_counts(sessions, "expiry_warning") == dict.fromkeys(batch[:3], 1)
        assert await _pids(sessions, "rehearsal:built", late) == {survivor.pid}

        survivor.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(survivor.wait, 20) == 0  # the loop keeps serving the simulator
        assert await leader_pid(pg_url) is None
    finally:
        await engine.dispose()
        for name in ("w1", "w2"):
            log = (tmp_path / f"{name}.log").read_text(errors="replace")
            print(f"--- {name} ---\n{log[-4000:]}")


async def _pids(sessions: Sessions, kind: str, names: list[str]) -> set[int]:
    """The OS pids of the processes (actor ``host:pid:suffix``) that wrote events of ``kind`` for these labs."""
    async with sessions() as session:
        rows = await session.scalars(select(LabEvent.actor).join(Lab, LabEvent.lab_id == Lab.id)
                                     .where(LabEvent.kind == kind, Lab.name.in_(names)))
        return {int(actor.split(":")[1]) for actor in rows.all()}
