"""The expiry sweep: warn before a lab expires, destroy it when it has, and keep failed destroys going.

Every action is claimed with the lab's optimistic lock: the write that records a warning (or moves the lab to
``destroying``) is the claim, and only the process whose write wins sends the notice or kicks the engine. Two
replicas, or ``labbot sweep`` next to the bot, therefore act once per lab and offset.

Each action is a decision handed to ``services.labs.lifecycle``, which re-reads the lab, applies the decision
with its audit events and sends the notice; a decision made on a row that has moved on is no decision.

A destroy that gave up (the pipeline's ``MAX_DESTROY_ATTEMPTS`` quick retries all failed) stays ``failed`` so
people can see it and ``/lab retry`` it, and this sweep re-drives it on a longer backoff, announcing each
round, so it is never silently forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from config.settings import Settings, parse_duration
from services.errors import StaleWriteError
from services.i18n import _
from services.labs import classes
from services.labs import repository as repo
from services.labs.lifecycle import SYSTEM, Change, Event, destroy_backoff
from services.labs.models import Lab, LabState
from services.labs.notifier import Notice, NoticeKind
from services.labs.views import LabView
from services.scheduler.context import SweepContext, clock_or_now

log = logging.getLogger(__name__)

WARNING_EVENT = "expiry_warning"
# A warning only makes sense where the lab is usable (or failed and still holding resources).
WARNABLE = frozenset({LabState.READY, LabState.EXPIRING, LabState.FAILED})


@dataclass
class ExpirySummary:
    """What one expiry sweep did (or, in a dry run, would do), by lab name."""

    dry_run: bool = False
    warned: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    redriven: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """An expiry sweep has no partial failure: what it could not claim, another process did."""
        return True

    @property
    def acted(self) -> bool:
        """Whether anything was (or would be) done."""
        return bool(self.warned or self.expired or self.redriven)

    def lines(self) -> list[str]:
        """One line per kind of action, for ``labbot sweep`` and the scheduler's log."""
        would = _("would ") if self.dry_run else ""
        parts = [
            (f"{would}warn", self.warned),
            (_("{would}destroy (expired)").format(would=would), self.expired),
            (_("{would}retry destroy").format(would=would), self.redriven),
            (_("failed destroys waiting for their next try"), self.waiting),
            (_("left to another process"), self.lost),
        ]
        lines = [
            _("expiry: {label}: {join}").format(label=label, join=", ".join(names)) for label, names in parts if names
        ]
        return lines or [_("expiry: nothing due")]


def warning_offsets(settings: Settings) -> list[tuple[str, timedelta]]:
    """The configured warning offsets, longest first (``["2h", "30m"]`` → 2h, then 30m)."""
    offsets = {text: parse_duration(text) for text in settings.expiry_warning_offsets}
    return sorted(offsets.items(), key=lambda item: item[1], reverse=True)


def due_offsets(lab: Lab, offsets: list[tuple[str, timedelta]], now: datetime) -> list[str]:
    """Offsets whose moment has come for this lab and that it was not warned about yet."""
    warned = set(lab.warned_offsets or ())
    return [text for text, delta in offsets if lab.expires_at - delta <= now and text not in warned]


def max_expiry(ctx: SweepContext, lab: Lab | LabView) -> datetime | None:
    """The latest the lab may be extended to (its profile's maximum lifetime), if the profile is known."""
    profile = ctx.profiles.get(lab.profile)
    return lab.created_at + profile.max_ttl if profile else None


async def expiry_sweep(ctx: SweepContext, *, now: datetime | None = None, dry_run: bool = False) -> ExpirySummary:
    """Warn labs nearing expiry, destroy expired ones, re-drive destroys that gave up."""
    now = clock_or_now(now)
    summary = ExpirySummary(dry_run=dry_run)
    offsets = warning_offsets(ctx.settings)
    horizon = now + (offsets[0][1] if offsets else timedelta(0))
    async with ctx.sessions() as session:
        due = await repo.due_for_expiry(session=session, horizon=horizon)
        gave_up = await repo.failed_destroys(session=session)
    for lab in due:
        if lab.expires_at <= now:
            await _expire(ctx, lab, now, summary)
        elif lab.state in WARNABLE and (texts := due_offsets(lab, offsets, now)):
            await _warn(ctx, lab, texts, now, summary)
    await _remind_trainers(ctx, offsets, now, summary)
    for lab, failed_at in gave_up:
        due_at = (failed_at or lab.updated_at) + destroy_backoff(ctx.settings, lab.destroy_attempts)
        if now < due_at:
            summary.waiting.append(
                _("{name} (next try {due_at:%Y-%m-%d %H:%M} UTC)").format(name=lab.name, due_at=due_at)
            )
        else:
            await _redrive(ctx, lab, now, summary)
    if summary.acted and not dry_run:
        log.info("expiry sweep: %s", "; ".join(summary.lines()))
    return summary


async def _remind_trainers(
    ctx: SweepContext, offsets: list[tuple[str, timedelta]], now: datetime, summary: ExpirySummary
) -> None:
    """Tell each class's trainer, once per offset, that the class's labs are about to expire."""
    async with ctx.sessions() as session:
        due = await classes.due_reminders(session, offsets, now)
    for reminder in due:
        when = reminder.first_lab.expires_at
        text = _(
            "class {name}: {live} labs expire from {when:%Y-%m-%d %H:%M} UTC (`/lab class extend "
            "{name} 2h` gives them more time)"
        ).format(name=reminder.name, live=reminder.live, when=when)
        summary.warned.append(
            _("class {name} ({value}, trainer)").format(name=reminder.name, value=reminder.offsets[-1])
        )
        if summary.dry_run:
            continue
        async with ctx.sessions() as session, session.begin():
            if not await classes.mark_reminded(session, reminder):
                continue
        await ctx.notifier.notify(
            Notice(
                NoticeKind.CLASS_EXPIRING,
                reminder.first_lab,
                actor=SYSTEM,
                text=text,
                details={"class": reminder.name, "trainer": reminder.trainer},
            )
        )


async def _warn(ctx: SweepContext, lab: Lab, texts: list[str], now: datetime, summary: ExpirySummary) -> None:
    if summary.dry_run:
        summary.warned.append(f"{lab.name} ({texts[-1]})")  # the nearest offset due: a lab hears only the latest
        return
    offsets = warning_offsets(ctx.settings)
    claimed: list[str] = []  # the offset the winning decision warned about

    def decide(fresh: Lab) -> Change | None:
        due = due_offsets(fresh, offsets, now)
        if fresh.state not in WARNABLE or fresh.expires_at <= now or not due:
            return None
        offset, limit = due[-1], max_expiry(ctx, fresh)
        claimed[:] = [offset]
        extendable = limit is None or limit > fresh.expires_at
        if limit is None:
            text = ""
        elif extendable:
            text = _("It can be extended until {limit:%Y-%m-%d %H:%M} UTC (its profile's maximum lifetime).").format(
                limit=limit
            )
        else:
            text = _("It is at its profile's maximum lifetime and cannot be extended.")
        expiry = f"{fresh.expires_at:%Y-%m-%d %H:%M} UTC"
        return Change(
            to=LabState.EXPIRING if fresh.state == LabState.READY else None,
            fields={"warned_offsets": [*(fresh.warned_offsets or []), *due]},
            detail=_("expires at {expiry}").format(expiry=expiry),
            events=(
                Event(WARNING_EVENT, _("{offset} before expiry at {expiry}").format(offset=offset, expiry=expiry)),
            ),
            notice=NoticeKind.EXPIRY_WARNING,
            text=text,
            details={
                "offset": offset,
                "expires_at": fresh.expires_at,
                "max_expires_at": limit,
                "extendable": extendable,
            },
        )

    if await _claim(ctx, lab, decide) is None:
        summary.lost.append(lab.name)
    else:
        summary.warned.append(f"{lab.name} ({claimed[0]})")


async def _expire(ctx: SweepContext, lab: Lab, now: datetime, summary: ExpirySummary) -> None:
    if summary.dry_run:
        summary.expired.append(lab.name)
        return

    def decide(fresh: Lab) -> Change | None:
        gave_up = fresh.state == LabState.FAILED and fresh.failed_step == "destroy"
        if fresh.state not in repo.EXPIRABLE_STATES or fresh.expires_at > now or gave_up:
            return None
        return Change(
            to=LabState.DESTROYING,
            fields={"destroy_requested_by": SYSTEM, "next_attempt_at": None},
            detail=_("expired at {expires_at:%Y-%m-%d %H:%M} UTC").format(expires_at=fresh.expires_at),
            notice=NoticeKind.DESTROYING,
            text=_("the lab expired"),
            details={"reason": "expired", "expires_at": fresh.expires_at},
            kick=True,
        )

    (summary.expired if await _claim(ctx, lab, decide) else summary.lost).append(lab.name)


async def _redrive(ctx: SweepContext, lab: Lab, now: datetime, summary: ExpirySummary) -> None:
    if summary.dry_run:
        summary.redriven.append(lab.name)
        return

    def decide(fresh: Lab) -> Change | None:
        if fresh.state != LabState.FAILED or fresh.failed_step != "destroy":
            return None
        attempts = fresh.destroy_attempts
        next_delay = destroy_backoff(ctx.settings, attempts + 1)
        return Change(
            to=LabState.DESTROYING,
            fields={"next_attempt_at": None},
            detail=_("destroy tried again by labbot after {attempts} failed attempts").format(attempts=attempts),
            notice=NoticeKind.RETRYING,
            text=_(
                "destroy failed {attempts} times (last: {value}); labbot tries again now and, if it "
                "fails, again in {next_delay}"
            ).format(attempts=attempts, value=fresh.error or "unknown error", next_delay=next_delay),
            details={
                "reason": "destroy_redrive",
                "attempts": attempts,
                "next_delay_seconds": next_delay.total_seconds(),
                "at": now,
            },
            kick=True,
        )

    (summary.redriven if await _claim(ctx, lab, decide) else summary.lost).append(lab.name)


async def _claim(ctx: SweepContext, lab: Lab, decide: Callable[[Lab], Change | None]) -> LabView | None:
    """Apply the sweep's decision through the lifecycle; None when the lab no longer calls for it."""
    try:
        return await ctx.lifecycle.apply(decide, actor=SYSTEM, lab_id=lab.id)
    except StaleWriteError:
        return None
