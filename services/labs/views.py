"""Immutable snapshots of labs for front ends and notifiers (no ORM object leaves the services layer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.labs.models import Lab, LabStep


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
    )
