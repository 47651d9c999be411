"""The scheduler: APScheduler running the sweeps, in exactly one labbot process at a time.

On PostgreSQL every process runs a ``Scheduler``; the one holding the advisory lock (``election``) runs the
jobs, the others try to take the lock every ``leader_check_seconds``. A leader that loses its lock connection
cancels its running jobs and stops APScheduler at once, then sits out one interval so a follower can take
over. On SQLite there is nothing to elect: the process runs the jobs itself, and one process is the
supported mode.

Jobs are registered here (``sweep_jobs``), apart from their bodies (``services.scheduler.jobs``), with
explicit ids, ``max_instances=1`` and ``coalesce=True`` in a MemoryJobStore: the database is the source of
truth, so nothing about jobs needs to be stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from services.scheduler.context import SweepContext
from services.scheduler.election import AdvisoryLock, asyncpg_dsn
from services.scheduler.expiry import expiry_sweep
from services.scheduler.health import health_sweep
from services.scheduler.jobs import pool_refill
from services.scheduler.orphans import orphan_sweep

if TYPE_CHECKING:
    from services.labs.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduledJob:
    """One recurring job: an id, how often, and what to run (a coroutine function without arguments)."""

    id: str
    every: timedelta
    run: Callable[[], Awaitable[object]]


def sweep_jobs(ctx: SweepContext) -> list[ScheduledJob]:
    """The expiry, health and orphan sweeps at the intervals the settings give."""
    settings = ctx.settings
    return [
        ScheduledJob("expiry", timedelta(seconds=settings.expiry_interval_seconds), lambda: expiry_sweep(ctx)),
        ScheduledJob("health", timedelta(minutes=settings.health_interval_minutes), lambda: health_sweep(ctx)),
        ScheduledJob("orphans", timedelta(minutes=settings.orphan_interval_minutes), lambda: orphan_sweep(ctx)),
        ScheduledJob("pool", timedelta(seconds=settings.pool_interval_seconds), lambda: pool_refill(ctx)),
    ]


class Scheduler:
    """Runs ``jobs`` while this process leads (always, on SQLite); ``status()`` feeds /healthz."""

    def __init__(
        self,
        jobs: Sequence[ScheduledJob],
        *,
        database_url: str,
        name: str,
        check_seconds: float = 5.0,
        enabled: bool = True,
    ) -> None:
        self.jobs = list(jobs)
        self.name = name
        self.check_seconds = check_seconds
        self.enabled = enabled
        self.single_process = database_url.startswith("sqlite")
        self._lock = None if self.single_process else AdvisoryLock(
            asyncpg_dsn(database_url), name=f"labbot-scheduler {name}", timeout=max(1.0, min(check_seconds, 5.0)))
        self._aps: AsyncIOScheduler | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[object]] = set()
        self._unreachable = False
        self.leader_since: datetime | None = None

    @classmethod
    def for_runtime(cls, rt: Runtime) -> Scheduler:
        """The sweeps of a running domain, elected under the engine's process name."""
        settings = rt.settings
        return cls(sweep_jobs(SweepContext.from_runtime(rt)), database_url=settings.database_url,
                   name=rt.engine.owner, check_seconds=settings.leader_check_seconds,
                   enabled=settings.scheduler_enabled)

    @property
    def is_leader(self) -> bool:
        """Whether this process runs the jobs now."""
        return self._aps is not None

    def status(self) -> dict[str, Any]:
        """For /healthz: ``running`` is False only when the scheduler should be working and is not (neither
        leading nor standing for election); a scheduler disabled by configuration is not a failure."""
        standing = self._loop_task is not None and not self._loop_task.done()
        running = self.is_leader or standing or not self.enabled
        jobs = {job.id: job.next_run_time.isoformat() if job.next_run_time else None
                for job in (self._aps.get_jobs() if self._aps is not None else [])}
        return {"running": running, "enabled": self.enabled, "leader": self.is_leader,
                "mode": "single-process (SQLite)" if self.single_process else "leader election (PostgreSQL)",
                "leader_since": self.leader_since.isoformat() if self.leader_since else None, "jobs": jobs}

    async def start(self) -> None:
        """Start leading (SQLite) or standing for election (PostgreSQL); returns at once."""
        if not self.enabled:
            log.info("scheduler disabled (LABBOT_SCHEDULER_ENABLED=false): no expiry, health or orphan sweeps here")
            return
        if self.single_process:
            log.info("SQLite database: this process runs the scheduler; a single labbot process is the supported "
                     "mode on SQLite (use PostgreSQL to run replicas)")
            self._lead()
            return
        self._loop_task = asyncio.create_task(self._elect_forever(), name="scheduler-election")

    async def stop(self) -> None:
        """Stop the jobs and give up the leadership (another replica takes over within its interval)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        await self._step_down("stopping")
        if self._lock is not None:
            await self._lock.release()

    # --- leadership ------------------------------------------------------------------------------------

    async def _elect_forever(self) -> None:
        assert self._lock is not None
        sit_out = False
        while True:
            try:
                sit_out = await self._elect_once(sit_out)
            except Exception:  # never let the election die: a dead loop would leave the jobs unrun everywhere
                log.exception("scheduler election failed; trying again")
                await self._step_down("election error")
                await self._lock.close()
            if self._lock.held:
                # Wake at once if asyncpg sees the connection close, else check again after the interval.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lock.lost.wait(), self.check_seconds)
            else:
                await asyncio.sleep(self.check_seconds)

    async def _elect_once(self, sit_out: bool) -> bool:
        """Check or try for the lock once; returns whether to sit out the next round."""
        assert self._lock is not None
        if self._lock.held or self.is_leader:
            if not await self._lock.verify():
                await self._step_down("lost the leader lock connection")
                return True
            return False
        if sit_out:
            return False  # give a follower one interval to take over
        try:
            if await self._lock.try_acquire():
                self._lead()
            self._unreachable = False
        except Exception as err:  # the database is down or refusing us: keep trying, saying so once
            log.log(logging.DEBUG if self._unreachable else logging.WARNING,
                    "scheduler election: cannot reach the database (%s); retrying every %ss",
                    type(err).__name__, self.check_seconds)
            self._unreachable = True
            await self._lock.close()
        return False

    def _lead(self) -> None:
        aps = AsyncIOScheduler(jobstores={"default": MemoryJobStore()}, timezone=UTC)
        now = datetime.now(UTC)
        for job in self.jobs:
            seconds = job.every.total_seconds()
            aps.add_job(functools.partial(self._run, job), IntervalTrigger(seconds=seconds, timezone=UTC),
                        id=job.id, name=job.id, max_instances=1, coalesce=True,
                        misfire_grace_time=max(1, int(seconds)), next_run_time=now)
        aps.start()
        self._aps, self.leader_since = aps, now
        log.info("scheduler: %s leads; running %s", self.name, ", ".join(j.id for j in self.jobs))

    async def _step_down(self, why: str) -> None:
        aps, self._aps, self.leader_since = self._aps, None, None
        if aps is None:
            return
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await asyncio.sleep(0)  # let the job wrappers return before APScheduler cancels what is left
        aps.shutdown(wait=False)
        level = logging.INFO if why == "stopping" else logging.WARNING
        log.log(level, "scheduler: %s stepped down (%s)", self.name, why)

    async def _run(self, job: ScheduledJob) -> None:
        """APScheduler's entry: run the job as a task we can cancel on step-down; log, never raise."""
        task = asyncio.ensure_future(job.run())
        self._running.add(task)
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            log.info("scheduled job %s cancelled: this process stopped leading", job.id)
        except Exception:
            log.exception("scheduled job %s failed; it runs again at its next interval", job.id)
        finally:
            self._running.discard(task)
