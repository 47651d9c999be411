"""The scheduled jobs by name: the sweeps as module-level async functions, each opening its own sessions.

``labbot sweep`` runs them once; ``services.scheduler.leader`` registers them with APScheduler. Each returns a
typed summary (what it did, ``ok``, ``lines()``) that the command line prints and tests assert on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal, Protocol

from services.scheduler.context import SweepContext
from services.scheduler.expiry import ExpirySummary, expiry_sweep
from services.scheduler.health import HealthSummary, health_sweep
from services.scheduler.orphans import OrphanSummary, orphan_sweep

log = logging.getLogger(__name__)

JobName = Literal["expiry", "health", "orphans", "pool"]
JOB_NAMES: tuple[JobName, ...] = ("expiry", "health", "orphans", "pool")

__all__ = ["JOB_NAMES", "ExpirySummary", "HealthSummary", "JobName", "OrphanSummary", "Summary", "expiry_sweep",
           "health_sweep", "orphan_sweep", "run_job"]


class Summary(Protocol):
    """What every sweep returns."""

    @property
    def ok(self) -> bool:
        """False when the sweep could not do part of its work (it says which in ``lines``)."""

    @property
    def acted(self) -> bool:
        """Whether anything worth logging happened."""

    def lines(self) -> list[str]:
        """A short human report."""


async def pool_refill(ctx: SweepContext, *, dry_run: bool = False) -> Summary:
    """Keep every profile's warm pool full (``services.labs.pool``); nothing to do without a pool."""
    if ctx.refill_pool is None:
        from services.labs.pool import PoolSummary

        return PoolSummary(dry_run=dry_run)
    summary: Summary = await ctx.refill_pool(dry_run=dry_run)
    return summary


async def run_job(name: JobName, ctx: SweepContext, *, dry_run: bool = False, now: datetime | None = None) -> Summary:
    """Run one sweep by name (``now`` moves the clock for the time-based ones)."""
    runners: dict[str, Callable[[], Awaitable[Summary]]] = {
        "expiry": lambda: expiry_sweep(ctx, now=now, dry_run=dry_run),
        "health": lambda: health_sweep(ctx, dry_run=dry_run),
        "orphans": lambda: orphan_sweep(ctx, now=now, dry_run=dry_run),
        "pool": lambda: pool_refill(ctx, dry_run=dry_run),
    }
    if name not in runners:
        raise ValueError(f"unknown job {name!r} (jobs: {', '.join(JOB_NAMES)})")
    return await runners[name]()
