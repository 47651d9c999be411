"""Immutable snapshots of labs for front ends and notifiers (no ORM object leaves the services layer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.labs.models import Lab, LabStep
from services.labs.tasks import SEEDED_COURSE_STEPS, TASK_TITLES, student_steps


@dataclass(frozen=True)
class StepView:
    """One pipeline step as people see it."""

    name: str
    title: str
    state: str
    attempt: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    progress: str | None
    error: str | None
    output_tail: str | None


@dataclass(frozen=True)
class TaskView:
    """One task of an exercise lab as the student sees it."""

    step: str
    title: str
    done: bool
    detail: str


@dataclass(frozen=True)
class ExerciseView:
    """An exercise lab's tasks and how far the student is (``done``/``total`` count the course's steps)."""

    start: str
    tasks: tuple[TaskView, ...]
    checked_at: datetime | None
    completed_at: datetime | None
    solving: str | None

    @property
    def done(self) -> int:
        return SEEDED_COURSE_STEPS + sum(t.done for t in self.tasks)

    @property
    def total(self) -> int:
        return SEEDED_COURSE_STEPS + len(self.tasks)

    @property
    def next_task(self) -> TaskView | None:
        """The first task not done yet."""
        return next((t for t in self.tasks if not t.done), None)


@dataclass(frozen=True)
class LabView:
    """One lab as people see it: identity, lifecycle, addresses, steps and the ready summary."""

    id: int
    uuid: str
    name: str
    owner: str
    channel: str | None
    profile: str
    state: str
    created_at: datetime
    expires_at: datetime
    destroyed_at: datetime | None
    ttl_extensions: int
    failed_step: str | None
    error: str | None
    health: str
    health_failing: tuple[str, ...]
    vm1_public_ip: str | None
    vm1_vpc_ip: str | None
    vm2_ip: str | None
    iscsi_iqn: str | None
    iscsi_wwid: str | None
    progress_ref: str | None
    summary: dict[str, Any] = field(default_factory=dict)
    steps: tuple[StepView, ...] = ()
    exercise: ExerciseView | None = None
    class_id: int | None = None
    claimable: bool = False
    pool: bool = False

    @property
    def current_step(self) -> StepView | None:
        """The first running step, if any."""
        return next((s for s in self.steps if s.state == "running"), None)


def step_view(step: LabStep, title: str | None = None) -> StepView:
    """Snapshot of one step."""
    return StepView(
        name=step.name,
        title=title or step.name.replace("_", " "),
        state=step.state,
        attempt=step.attempt,
        started_at=step.started_at,
        finished_at=step.finished_at,
        duration_seconds=step.duration_seconds,
        progress=step.progress,
        error=step.error,
        output_tail=step.output_tail,
    )


def exercise_view(start: str | None, record: dict[str, Any] | None) -> ExerciseView | None:
    """Snapshot of an exercise lab's tasks from its record (None for a normal lab)."""
    if start is None:
        return None
    record = record or {}
    results = record.get("results", {})
    tasks = tuple(
        TaskView(step, TASK_TITLES[step], bool(results.get(step, {}).get("done")),
                 str(results.get(step, {}).get("detail", "not checked yet")))
        for step in student_steps(start)
    )
    return ExerciseView(start=start, tasks=tasks, checked_at=_when(record.get("checked_at")),
                        completed_at=_when(record.get("completed_at")), solving=record.get("solving"))


def _when(text: object) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def lab_view(lab: Lab, steps: list[LabStep] | None = None, titles: dict[str, str] | None = None) -> LabView:
    """Snapshot of a lab (and its steps, when given)."""
    titles = titles or {}
    return LabView(
        id=lab.id,
        uuid=lab.uuid,
        name=lab.name,
        owner=lab.owner,
        channel=lab.channel,
        profile=lab.profile,
        state=lab.state,
        created_at=lab.created_at,
        expires_at=lab.expires_at,
        destroyed_at=lab.destroyed_at,
        ttl_extensions=lab.ttl_extensions,
        failed_step=lab.failed_step,
        error=lab.error,
        health=lab.health,
        health_failing=tuple(lab.health_failing or ()),
        vm1_public_ip=lab.vm1_public_ip,
        vm1_vpc_ip=lab.vm1_vpc_ip,
        vm2_ip=lab.vm2_ip,
        iscsi_iqn=lab.iscsi_iqn,
        iscsi_wwid=lab.iscsi_wwid,
        progress_ref=lab.progress_ref,
        summary=dict(lab.summary or {}),
        steps=tuple(step_view(s, titles.get(s.name)) for s in (steps or [])),
        exercise=exercise_view(lab.exercise_start, lab.exercise),
        class_id=lab.class_id,
        claimable=bool(lab.claimable),
        pool=bool(lab.pool),
    )
