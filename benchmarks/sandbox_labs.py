"""Labs built for real in a private lab-in-a-box, for the engine and load benchmarks.

``bench_box`` brings up a box with its own base dir, name prefix and public /24 (so it never touches a demo or
a test run), the outer simulator in its own process (``benchmarks.outer_sim``, latencies scaled), a fresh
database (PostgreSQL when reachable, so connection counts are real, else SQLite) and a ``Runtime`` wired as
``labbot demo`` wires it. Leaving the block always stops everything, runs the real ``sandbox down`` and drops
the database, whatever happened inside.

Step timings come from the ``lab_steps`` rows the pipeline records; the critical path is computed over the
pipeline's own DAG (``services.labs.build.steps.build_steps``) with those measured durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import event, select

from benchmarks.common import netns_pids, pss_bytes
from config.settings import load_settings
from sandbox import lifecycle, system
from sandbox.config import SandboxConfig
from services import db
from services.labs import repository as repo
from services.labs.build.context import LabContext
from services.labs.build.steps import TITLES, build_steps
from services.labs.models import LabEvent, LabState
from services.labs.notifier import Notice
from services.labs.runtime import Runtime
from services.labs.service import Actor
from services.zstack.query import eq

log = logging.getLogger(__name__)

PG_ADMIN_URL = os.environ.get("LABBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
OWNER = Actor("U_BENCH")


@dataclass
class LabTiming:
    """One lab's build as recorded: when it was asked for, became ready, and each step's interval."""

    name: str
    state: str
    created: datetime
    ready: datetime | None
    steps: dict[str, tuple[datetime, datetime]]

    @property
    def wall(self) -> float:
        """Seconds from the create request to ready."""
        end = self.ready or max(f for _, f in self.steps.values())
        return (end - self.created).total_seconds()

    @property
    def durations(self) -> dict[str, float]:
        return {name: (f - s).total_seconds() for name, (s, f) in self.steps.items()}


def critical_path(durations: dict[str, float], after: dict[str, tuple[str, ...]]) -> tuple[float, list[str]]:
    """The longest chain of dependent steps, weighted by duration: its length and the steps on it."""
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    pending = dict(after)
    while pending:
        for name, deps in list(pending.items()):
            if all(d in finish for d in deps):
                best = max(deps, key=lambda d: finish[d], default=None)
                finish[name] = (finish[best] if best else 0.0) + durations.get(name, 0.0)
                via[name] = best
                del pending[name]
    end: str | None = max(finish, key=lambda n: finish[n])
    length = finish[end]
    chain = []
    while end is not None:
        chain.append(end)
        end = via[end]
    return length, list(reversed(chain))


class CountingNotifier:
    """Counts notices by kind (keeping them all would inflate the memory being measured)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    async def notify(self, notice: Notice) -> None:
        self.counts[notice.kind] = self.counts.get(notice.kind, 0) + 1


@dataclass
class BenchBox:
    """A running box: its config, the outer simulator process, the database and labbot's Runtime."""

    config: SandboxConfig
    sim: asyncio.subprocess.Process
    database_url: str
    rt: Runtime
    notices: CountingNotifier
    postgres: bool
    pool: PoolWatch
    names: list[str] = field(default_factory=list)

    @property
    def dag(self) -> dict[str, tuple[str, ...]]:
        """Each pipeline step's dependencies, from the pipeline itself."""
        ctx = LabContext(lab_id=0, lab_uuid="0" * 32, lab_name="dag", profile=self.rt.profiles["sandbox"],
                         settings=self.rt.settings, sessions=self.rt.sessions, notifier=self.notices,
                         box=self.rt.box, connections=None, titles=TITLES)
        return {s.name: s.after for s in build_steps(ctx, self.rt.outer, None)}

    async def create(self, names: Sequence[str], ttl_hours: int = 2) -> list[int]:
        """Ask for every lab at once (as many users would); return their ids."""
        from datetime import timedelta

        views = await asyncio.gather(*(self.rt.service.create(OWNER, name=n, ttl=timedelta(hours=ttl_hours))
                                       for n in names))
        self.names += list(names)
        return [v.id for v in views]

    async def destroy(self, names: Sequence[str]) -> None:
        await asyncio.gather(*(self.rt.service.destroy(OWNER, n) for n in names))

    async def settle(self, timeout: float) -> None:
        await self.rt.engine.wait_idle(timeout=timeout)

    async def timing(self, lab_id: int) -> LabTiming:
        async with self.rt.sessions() as session:
            lab = await repo.get(session=session, lab_id=lab_id)
            steps = await repo.list_steps(session=session, lab_id=lab_id)
            ready = await session.scalar(select(LabEvent.at).where(
                LabEvent.lab_id == lab_id, LabEvent.kind == f"state:{LabState.READY.value}"))
        return LabTiming(lab.name, lab.state, lab.created_at, ready,
                         {s.name: (s.started_at, s.finished_at) for s in steps if s.started_at and s.finished_at})

    async def failures(self) -> dict[str, str]:
        """Labs that did not end ready, with their failed step and error."""
        found = {}
        async with self.rt.sessions() as session:
            for name in self.names:
                lab = await repo.get_latest_by_name(session=session, name=name)
                if lab.state == LabState.FAILED:
                    found[name] = f"{lab.failed_step}: {lab.error}"
        return found

    async def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        async with self.rt.sessions() as session:
            for name in self.names:
                lab = await repo.get_latest_by_name(session=session, name=name)
                counts[lab.state] = counts.get(lab.state, 0) + 1
        return counts

    def box_pids(self) -> list[int]:
        """The box's processes: everything in its namespaces, and the outer simulator."""
        return [self.sim.pid, *netns_pids(self.config.prefix)]

    def box_pss(self) -> float:
        return float(sum(pss_bytes(p) for p in self.box_pids()))

    async def platform_leftovers(self) -> dict[str, int]:
        """VMs and data volumes the lab platform still holds (expunged ones are gone from queries)."""
        vms = await self.rt.outer.count("QueryVmInstance")
        volumes = await self.rt.outer.count("QueryVolume", [eq("type", "Data")])
        return {"vms": vms, "data volumes": volumes}


async def _database(postgres: bool, tmp: Path) -> str:
    if not postgres:
        return f"sqlite+aiosqlite:///{tmp / 'labbot.db'}"
    import asyncpg

    name = f"labbot_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"


async def _drop(url: str) -> None:
    if not url.startswith("postgresql"):
        return
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def postgres_available() -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def _start_sim(config: SandboxConfig, latency_scale: float) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.outer_sim", "--base-dir", str(config.base_dir), "--prefix", config.prefix,
        "--public", config.public_gateway, "--latency-scale", f"{latency_scale:g}",
        stdout=asyncio.subprocess.PIPE, cwd=str(Path(__file__).resolve().parents[1]))
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode().strip()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError("the outer simulator did not start in 30 s") from None
    if not line.startswith("http://"):
        await proc.wait()
        raise RuntimeError(f"the outer simulator did not start (exit {proc.returncode})")
    return proc, line


async def _stop_sim(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            async with asyncio.timeout(15):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def bench_box(name: str, *, prefix: str, public: str, latency_scale: float, labs: int,
                    postgres: bool | None = None) -> AsyncIterator[BenchBox]:
    """A private box named ``name`` with room for ``labs`` labs; everything is removed on exit."""
    from benchmarks.outer_sim import box_config

    system.require_sandbox()
    config = box_config(Path(f"/var/lib/labbot-bench-{name}-{os.getpid()}"), prefix, public, latency_scale)
    if postgres is None:
        postgres = await postgres_available()
    workdir = Path(tempfile.mkdtemp(prefix=f"labbot-bench-{name}-"))
    url = ""
    sim: asyncio.subprocess.Process | None = None
    rt: Runtime | None = None
    try:
        await lifecycle.up(config)
        sim, sim_url = await _start_sim(config, latency_scale)
        url = await _database(postgres, workdir)
        await db.upgrade(url)
        settings = load_settings(
            database_url=url, state_dir=workdir, platform_url=sim_url, platform_account="admin",
            platform_password=SecretStr("password"), default_profile="sandbox", max_labs_per_user=labs,
            max_labs_total=labs, log_level="WARNING",
        )
        notices = CountingNotifier()
        rt = Runtime(settings, notifiers=[notices], engine_poll_interval=5.0)
        await rt.start()
        yield BenchBox(config, sim, url, rt, notices, postgres, PoolWatch(rt.db_engine))
    finally:
        if rt is not None:
            await rt.stop()
        if sim is not None:
            await _stop_sim(sim)
        report = await lifecycle.down(config)
        log.warning("bench box %s down: %s", name, report.summary())
        if url:
            await _drop(url)
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


class PoolWatch:
    """How long database connections are held, by the asyncio task holding them (pool checkout → checkin).

    A pool timeout under load means some holder keeps its connection while it waits on something else; the
    task names (``step:<name>``, ``lab:<id>``, ``lease:<id>``) say which.
    """

    def __init__(self, engine: Any) -> None:
        self.out: dict[int, tuple[float, str]] = {}
        self.longest: dict[str, float] = {}
        self.peak_out = 0
        pool = engine.sync_engine.pool
        event.listen(pool, "checkout", self._checkout)
        event.listen(pool, "checkin", self._checkin)

    @staticmethod
    def _holder() -> str:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return "no task"
        name = task.get_name() if task else "no task"
        return name.split(":", 1)[0] + (":" + name.split(":", 1)[1] if name.startswith("step:") else "")

    def _checkout(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        self.out[id(dbapi_conn)] = (time.monotonic(), self._holder())
        self.peak_out = max(self.peak_out, len(self.out))

    def _checkin(self, dbapi_conn: Any, _record: Any) -> None:
        started = self.out.pop(id(dbapi_conn), None)
        if started is not None:
            held = time.monotonic() - started[0]
            self.longest[started[1]] = max(self.longest.get(started[1], 0.0), held)

    def top(self, n: int = 4) -> str:
        worst = sorted(self.longest.items(), key=lambda kv: kv[1], reverse=True)[:n]
        return ", ".join(f"{name} {held:.1f} s" for name, held in worst) or "none"
