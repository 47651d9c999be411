"""How the lab engine tells the world what happens, without knowing who listens.

The engine emits ``Notice`` values; a front end implements ``Notifier`` (the console prints them, Slack keeps
one live card per lab and puts details in its thread). Notifiers must not raise into the engine: a failed
message must never fail a lab, so ``FanOut`` logs and swallows their errors.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from services.labs.views import LabView, StepView

log = logging.getLogger(__name__)


class NoticeKind(enum.StrEnum):
    """Everything the engine and the scheduler announce."""

    CREATED = "created"
    STEP_STARTED = "step_started"
    STEP_PROGRESS = "step_progress"
    STEP_FINISHED = "step_finished"
    STEP_FAILED = "step_failed"
    STEP_NOTE = "step_note"  # a step explains something it does on its own (e.g. cleaning up before a re-run)
    READY = "ready"
    FAILED = "failed"
    RETRYING = "retrying"
    EXTENDED = "extended"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    DESTROY_FAILED = "destroy_failed"
    HEALTH_CHANGED = "health_changed"
    EXPIRY_WARNING = "expiry_warning"
    EXERCISE_CHECKED = "exercise_checked"
    EXERCISE_SOLVED = "exercise_solved"
    EXERCISE_COMPLETE = "exercise_complete"
    PICTURE = "picture"  # details["picture"]: services.labs.picture.LabPicture, for the lab's thread
    CAPTURED = "captured"  # details["capture"]: services.capture.service.CaptureReport, for the lab's thread
    CLAIMED = "claimed"
    CLASS_EXPIRING = "class_expiring"


@dataclass(frozen=True)
class Notice:
    """One thing that happened to a lab, with the lab as it is now."""

    kind: NoticeKind
    lab: LabView
    step: StepView | None = None
    actor: str | None = None
    text: str = ""
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class OrphanReport:
    """What the orphan sweep found on the lab platform: news about the platform, not about any one lab.

    ``resources`` maps each resource's label to ``uuid; why it is an orphan; what becomes of it``; ``channel`` is
    where platform news goes (LABBOT_CHANNEL; None: nowhere in Slack).
    """

    text: str
    resources: Mapping[str, str]
    channel: str | None
    at: datetime


@runtime_checkable
class OrphanReporter(Protocol):
    """A front end that shows orphan reports (the admins' channel, the console)."""

    async def report_orphans(self, report: OrphanReport) -> None:
        """Show one report; must not raise into the sweep."""


async def report_orphans(notifier: object, report: OrphanReport) -> None:
    """Hand ``report`` to ``notifier`` if it shows orphan reports (a FanOut passes it on to those that do)."""
    if isinstance(notifier, OrphanReporter):
        await notifier.report_orphans(report)


class Notifier(Protocol):
    """Something that shows notices to people (console, Slack, a test recorder)."""

    async def notify(self, notice: Notice) -> None:
        """Show one notice; called from the engine's tasks, possibly concurrently for different labs."""


class FanOut:
    """Sends every notice to several notifiers; one failing does not stop the others or the engine."""

    def __init__(self, notifiers: Sequence[Notifier] = ()) -> None:
        self._notifiers = list(notifiers)

    def add(self, notifier: Notifier) -> None:
        """Subscribe one more notifier."""
        self._notifiers.append(notifier)

    async def notify(self, notice: Notice) -> None:
        """Deliver to each subscriber, logging (not raising) their failures."""
        for notifier in self._notifiers:
            try:
                await notifier.notify(notice)
            except Exception:
                log.exception("notifier %s failed on %s for lab %s", type(notifier).__name__, notice.kind,
                              notice.lab.name)

    async def report_orphans(self, report: OrphanReport) -> None:
        """Deliver to each subscriber that shows orphan reports, logging (not raising) their failures."""
        for notifier in self._notifiers:
            try:
                await report_orphans(notifier, report)
            except Exception:
                log.exception("notifier %s failed on an orphan report", type(notifier).__name__)


class RecordingNotifier:
    """Keeps every notice in order: the console's transcript and the tests' witness."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []
        self.orphan_reports: list[OrphanReport] = []

    async def notify(self, notice: Notice) -> None:
        """Record the notice."""
        self.notices.append(notice)

    async def report_orphans(self, report: OrphanReport) -> None:
        """Record the report."""
        self.orphan_reports.append(report)

    def kinds(self, lab: str | None = None) -> list[NoticeKind]:
        """The kinds recorded (for one lab, if given), in order."""
        return [n.kind for n in self.notices if lab is None or n.lab.name == lab]
