"""The health sweep: run every ready lab's checks, and tell the channel only what changed.

``LabPipeline.health`` stores each check with its latency and the lab's verdict. What the channel last heard is
kept apart, as ``health:degraded`` / ``health:recovered`` audit events, because ``/lab health`` also updates the
verdict on demand without announcing anything: comparing with the verdict alone would swallow a degradation
someone happened to look at first. The channel hears a lab go degraded (naming the failing checks), a
degraded lab fail differently, and a lab recover.

At most ``health_concurrency`` labs are checked at once, so 100 ready labs never open 100 SSH sessions together.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from services.db import utcnow
from services.errors import LabbotError
from services.i18n import _
from services.labs import repository as repo
from services.labs.build.dag import describe_error
from services.labs.build.health import HealthReport
from services.labs.lifecycle import SYSTEM
from services.labs.models import Health, Lab, LabEvent, LabState
from services.scheduler.context import SweepContext

log = logging.getLogger(__name__)

DEGRADED_EVENT = "health:degraded"
RECOVERED_EVENT = "health:recovered"
WATCHED = (LabState.READY, LabState.EXPIRING)
# Eight checks of at most 20 s each (services.labs.build.health.CHECK_TIMEOUT), with room for connecting.
LAB_TIMEOUT = 240.0


@dataclass
class HealthSummary:
    """What one health sweep saw, by lab name."""

    dry_run: bool = False
    checked: list[str] = field(default_factory=list)
    healthy: list[str] = field(default_factory=list)
    degraded: dict[str, list[str]] = field(default_factory=dict)
    announced: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    pruned: int = 0

    @property
    def ok(self) -> bool:
        """False when labbot itself could not check some lab (a degraded lab is a finding, not a failure)."""
        return not self.errors

    @property
    def acted(self) -> bool:
        """Whether anything worth logging happened."""
        return bool(self.announced or self.errors)

    def lines(self) -> list[str]:
        """A short report for ``labbot sweep`` and the scheduler's log."""
        if self.dry_run:
            return [
                _("health: would check {join}").format(join=", ".join(self.checked))
                if self.checked
                else _("health: no ready labs")
            ]
        if not self.checked:
            return [_("health: no ready labs")]
        lines = [
            _("health: checked {len}, healthy {len2}, degraded {len3}").format(
                len=len(self.checked), len2=len(self.healthy), len3=len(self.degraded)
            )
        ]
        lines += [
            _("health: {name} degraded: {join}").format(name=name, join=", ".join(checks))
            for name, checks in self.degraded.items()
        ]
        if self.announced:
            lines.append(_("health: announced {join}").format(join=", ".join(self.announced)))
        lines += [
            _("health: could not check {name}: {error}").format(name=name, error=error)
            for name, error in self.errors.items()
        ]
        return lines


async def health_sweep(ctx: SweepContext, *, dry_run: bool = False) -> HealthSummary:
    """Check every ready lab (bounded concurrency); announce verdicts that changed since last announced."""
    summary = HealthSummary(dry_run=dry_run)
    async with ctx.sessions() as session:
        labs = await repo.list_(session=session, states=[s.value for s in WATCHED], limit=100_000)
        # A ready lab under a live lease is being worked on (``labbot bake`` stops its VM2): not a health verdict.
        now = utcnow()
        labs = [lab for lab in labs if not (lab.lease_owner and lab.lease_expires_at and lab.lease_expires_at > now)]
        heard = await repo.latest_events(
            session=session, lab_ids=[lab.id for lab in labs], kinds=[DEGRADED_EVENT, RECOVERED_EVENT]
        )
    summary.checked = [lab.name for lab in reversed(labs)]
    if dry_run:
        return summary
    gate = asyncio.Semaphore(ctx.settings.health_concurrency)

    async def check(lab: Lab) -> None:
        async with gate:
            try:
                async with asyncio.timeout(LAB_TIMEOUT):
                    report = await ctx.health(lab.id)
            except Exception as err:
                summary.errors[lab.name] = describe_error(err)
                log.warning(
                    "health sweep could not check lab %s: %s",
                    lab.name,
                    summary.errors[lab.name],
                    exc_info=not isinstance(err, LabbotError),
                )
                return
        if report.healthy:
            summary.healthy.append(lab.name)
        else:
            summary.degraded[lab.name] = report.failing
        try:
            if await _announce_change(ctx, lab, report, heard.get(lab.id)):
                summary.announced.append(f"{lab.name} {'recovered' if report.healthy else 'degraded'}")
        except Exception as err:
            summary.errors[lab.name] = _("checked, but the change was not announced: {describe_error}").format(
                describe_error=describe_error(err)
            )
            log.exception("health sweep could not announce lab %s", lab.name)

    await asyncio.gather(*(check(lab) for lab in reversed(labs)))
    summary.pruned = await prune_old_health_rows(ctx)
    if summary.acted:
        log.info("health sweep: %s", "; ".join(summary.lines()))
    return summary


async def prune_old_health_rows(ctx: SweepContext) -> int:
    """Delete health rows older than ``LABBOT_HEALTH_RETENTION_DAYS`` (every run adds one row per check)."""
    before = utcnow() - timedelta(days=ctx.settings.health_retention_days)
    async with ctx.sessions() as session, session.begin():
        pruned = await repo.prune_health_checks(session=session, before=before)
    if pruned:
        log.info("health sweep: pruned %d health rows older than %d days", pruned, ctx.settings.health_retention_days)
    return pruned


async def _announce_change(ctx: SweepContext, lab: Lab, report: HealthReport, last: LabEvent | None) -> bool:
    """Record and announce the verdict when it differs from what the channel last heard; True if it did."""
    if report.lab.state not in WATCHED:
        return False  # destroyed (or expiring into destroy) while being checked: nobody needs to hear it
    was_degraded = last is not None and last.kind == DEGRADED_EVENT
    heard_failing = set(last.detail.split(",")) if was_degraded and last and last.detail else set()
    if report.healthy:
        if not was_degraded:
            return False
        kind, detail = RECOVERED_EVENT, ""
    else:
        if was_degraded and set(report.failing) == heard_failing:
            return False
        kind, detail = DEGRADED_EVENT, ",".join(report.failing)
    async with ctx.sessions() as session, session.begin():
        row = await repo.get(session=session, lab_id=lab.id)
        await repo.add_event(session=session, lab=row, actor=SYSTEM, kind=kind, detail=detail)
    await ctx.announce_health(report, Health.DEGRADED.value if was_degraded else Health.OK.value)
    return True
