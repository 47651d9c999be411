"""Cleanup of many expired labs by the scheduler's expiry sweep: ``python -m benchmarks.cleanup [--quick]``.

Issue 8: 1,000 labs in ``ready`` whose outer resources really exist on the lab platform (the outer simulator,
in its own process, no sandbox): each lab's VM1, VM2 and data volume are made by the pipeline's own
``prepare``, ``create_vms`` and ``attach_volume`` steps, then the lab is set ``ready`` with ``expires_at`` in
the past. One expiry sweep then hands them all to the engine, which runs the real destroy (expunge, verify on
the platform, forget keys). Measured: time from the sweep to the last lab destroyed, peak concurrency (labs the
engine works on at once, sampled every 50 ms; database connections from ``pg_stat_activity`` on PostgreSQL),
and SQL statements per lab (a SQLAlchemy ``before_cursor_execute`` listener), for the sweep alone and for the
whole cleanup. Afterwards the platform must hold no VM and no data volume. Results go to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import event, func, select

from benchmarks.common import stamp, write_section
from benchmarks.load import POOL_BOUND, DbConnections
from benchmarks.sandbox_labs import CountingNotifier, _database, _drop, postgres_available
from config.settings import load_settings
from services import db
from services.db import utcnow
from services.labs import repository as repo
from services.labs.build.steps import build_steps
from services.labs.models import Lab, LabState
from services.labs.runtime import Runtime
from services.scheduler.context import SweepContext
from services.scheduler.expiry import expiry_sweep
from services.zstack.query import eq

log = logging.getLogger(__name__)

NAME = "cleanup"
SEED_CONCURRENCY = 20  # more is slower: 100 at once seeded 3 labs in 85 s (20: 100 labs in 117 s)
SEED_STEPS = ("prepare", "create_vms", "attach_volume")


@dataclass
class StatementCounter:
    """Counts SQL statements sent through an engine while ``active``."""

    count: int = 0
    active: bool = False

    def __call__(self, *_: Any) -> None:
        if self.active:
            self.count += 1


async def _start_platform() -> tuple[asyncio.subprocess.Process, str]:
    """The outer simulator (no hooks, no latency, room for the labs) in its own process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.outer_sim", "--plain", "--latency-scale", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=str(Path(__file__).resolve().parents[1]))
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("the outer simulator exited while starting")
                if line.startswith("http://"):
                    return proc, line.strip()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        raise


async def seed(rt: Runtime, count: int, concurrency: int) -> None:
    """``count`` ready labs, expired, with their VMs and volume made on the platform by the pipeline's steps."""
    past = utcnow() - timedelta(minutes=5)
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with gate:
            async with rt.sessions() as session, session.begin():
                lab = await repo.create(session=session, name=f"old-{index:04d}", owner=f"U{index % 50:03d}",
                                        profile="sandbox", expires_at=past, channel=None)
            ctx = await rt.pipeline._context(lab.id)  # the context a real build gets (private: same wiring)
            steps = {s.name: s for s in build_steps(ctx, rt.outer, None)}
            try:
                for name in SEED_STEPS:
                    await steps[name].run()
            finally:
                await ctx.connections.close()
            await ctx.update(state=LabState.READY)

    await asyncio.gather(*(one(i) for i in range(count)))


async def run(*, labs: int, postgres: bool) -> tuple[list[str], bool]:
    workdir = Path(tempfile.mkdtemp(prefix="labbot-bench-cleanup-"))
    platform, url = await _start_platform()
    database = await _database(postgres, workdir)
    rt: Runtime | None = None
    try:
        await db.upgrade(database)
        settings = load_settings(database_url=database, state_dir=workdir, platform_url=url,
                                 platform_account="admin", platform_password=SecretStr("password"),
                                 default_profile="sandbox", max_labs_per_user=labs, max_labs_total=labs,
                                 log_level="WARNING")
        rt = Runtime(settings, notifiers=[CountingNotifier()], engine_poll_interval=5.0)
        started = time.perf_counter()
        # Before the engine starts: it would build the labs that are still ``requested``.
        await seed(rt, labs, concurrency=SEED_CONCURRENCY)
        seed_seconds = time.perf_counter() - started
        await rt.start()
        before = {"vms": await rt.outer.count("QueryVmInstance"),
                  "data volumes": await rt.outer.count("QueryVolume", [eq("type", "Data")])}

        counter = StatementCounter()
        event.listen(rt.db_engine.sync_engine, "before_cursor_execute", counter)
        ctx = SweepContext.from_runtime(rt)
        peak_busy = 0

        async def watch() -> None:
            nonlocal peak_busy
            while True:
                peak_busy = max(peak_busy, len(rt.engine.running_labs))
                await asyncio.sleep(0.05)

        connections = DbConnections(database) if postgres else None
        async with contextlib.AsyncExitStack() as stack:
            if connections is not None:
                await stack.enter_async_context(connections)
            watcher = asyncio.create_task(watch())
            counter.active = True
            started = time.perf_counter()
            summary = await expiry_sweep(ctx)
            sweep_seconds = time.perf_counter() - started
            sweep_statements = counter.count
            await rt.engine.wait_idle(timeout=3600)
            total_seconds = time.perf_counter() - started
            counter.active = False
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        async with rt.sessions() as session:
            states = dict((await session.execute(select(Lab.state, func.count()).group_by(Lab.state))).all())
        after = {"vms": await rt.outer.count("QueryVmInstance"),
                 "data volumes": await rt.outer.count("QueryVolume", [eq("type", "Data")])}
    finally:
        if rt is not None:
            await rt.stop()
        platform.terminate()
        await platform.wait()
        await _drop(database)
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    destroyed = states.get(LabState.DESTROYED.value, 0)
    per_lab = counter.count / labs
    met = destroyed == labs and not any(after.values()) and len(summary.expired) == labs
    lines = [
        f"## Cleanup: {labs} expired labs swept and destroyed (`python -m benchmarks.cleanup`)",
        "",
        stamp(),
        "",
        f"Outer simulator in its own process, no latency, no sandbox; database: "
        f"{'PostgreSQL' if postgres else 'SQLite'}. Seeding (the pipeline's prepare, create_vms and "
        f"attach_volume for every lab, {SEED_CONCURRENCY} at a time) took {seed_seconds:.0f} s and left {before} "
        "on the platform.",
        "",
        "| figure | measured |",
        "| --- | ---: |",
        f"| labs the sweep moved to destroying | {len(summary.expired)} of {labs} |",
        f"| labs destroyed | {destroyed} (states at the end: {states}) |",
        f"| left on the platform | {after} |",
        f"| the sweep itself | {sweep_seconds:.1f} s, {sweep_statements} statements "
        f"({sweep_statements / labs:.1f} per lab) |",
        f"| sweep → last lab destroyed | **{total_seconds:.1f} s** ({labs / total_seconds * 60:.0f} labs/min) |",
        f"| SQL statements, sweep + every destroy | {counter.count} (**{per_lab:.1f} per lab**) |",
        f"| peak labs worked on at once by the engine | **{peak_busy}** |",
        f"| peak database connections (pg_stat_activity); pool bound | {connections.peak}; {POOL_BOUND} |"
        if connections else "| database connections | SQLite |",
    ]
    return lines, met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Expiry cleanup benchmark (issue 8).")
    parser.add_argument("--quick", action="store_true", help="100 labs instead of 1,000")
    parser.add_argument("--labs", type=int, default=None)
    parser.add_argument("--sqlite", action="store_true", help="SQLite even when PostgreSQL is reachable")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    labs = args.labs or (100 if args.quick else 1000)

    async def go() -> tuple[list[str], bool]:
        postgres = not args.sqlite and await postgres_available()
        return await run(labs=labs, postgres=postgres)

    lines, met = asyncio.run(go())
    print(write_section(NAME, lines))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
