"""Fixtures for the scheduler: a real Runtime on each database, the outer simulator on loopback, a clock.

Sweeps run against the real database and, for orphans, the real ZStack simulator over HTTP. The seams are the
ones the sweeps declare in ``SweepContext``: the notifier records, ``kick`` records which labs the engine was
told about, and ``health`` is a scripted stand-in for ``LabPipeline.health`` (the real checks need SSH to lab
hosts; the sandbox tests cover them).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from config.profiles import load_profiles
from config.settings import Settings
from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from services.errors import NotFoundError
from services.labs import repository as repo
from services.labs.build.health import CheckResult, HealthReport
from services.labs.models import Lab, LabState
from services.labs.notifier import Notice, NoticeKind, RecordingNotifier
from services.labs.runtime import Runtime
from services.labs.views import lab_view
from services.scheduler.context import SweepContext
from services.zstack import PollPolicy, RetryPolicy, ZStackClient
from tests.fakes.keys import SECRET_KEY

PROFILES = load_profiles(Path(__file__).resolve().parents[2] / "config" / "profiles")
CHECKS = ("outer_vms", "ssh_vm1", "ssh_vm2", "iscsi_portal", "nested_api", "kvm_host", "shared_block", "nested_vm")
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # the tests' clock starts here; sweeps take ``now``
FAST_POLL = PollPolicy(initial=0.005, factor=1.5, cap=0.05)


def settings_for(database_url: str, platform_url: str, **overrides: Any) -> Settings:
    """Settings of a test labbot: sandbox profile, 2h and 30m warnings, deletion of orphans on."""
    values: dict[str, Any] = dict(
        database_url=database_url, platform_url=platform_url, default_profile="sandbox",
        expiry_warning_offsets=["2h", "30m"], destroy_retry_base_seconds=60, destroy_retry_max_seconds=3600,
        orphan_grace_minutes=120, orphan_delete=True, orphan_report_hours=24, health_concurrency=3,
        channel="C_LABS", secret_key=SECRET_KEY,
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class ScriptedHealth:
    """Stands in for ``LabPipeline.health``: each lab fails the checks the test names (none by default)."""

    sessions: Any
    failing: dict[str, list[str]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    delay: float = 0.0
    calls: list[str] = field(default_factory=list)
    active: int = 0
    peak: int = 0

    async def __call__(self, lab_id: int) -> HealthReport:
        async with self.sessions() as session:
            lab = await repo.get(session=session, lab_id=lab_id)
        self.calls.append(lab.name)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
            if lab.name in self.broken:
                raise NotFoundError(f"lab {lab.name} uses profile gone, which this labbot does not have")
            bad = set(self.failing.get(lab.name, ()))
            checks = tuple(CheckResult(name, name not in bad, 5, "ok" if name not in bad else "refused")
                           for name in CHECKS)
            return HealthReport(lab_view(lab), checks)
        finally:
            self.active -= 1


@dataclass
class World:
    """One test labbot: settings, runtime, the sweep context, and what the seams recorded."""

    settings: Settings
    rt: Runtime
    ctx: SweepContext
    notices: RecordingNotifier
    kicked: list[int]
    health: ScriptedHealth
    sim: RunningSimulator

    @property
    def sessions(self) -> Any:
        return self.rt.sessions

    def reconfigure(self, **overrides: Any) -> None:
        """Change settings for the next sweeps (e.g. turn orphan deletion off)."""
        self.settings = self.settings.model_copy(update=overrides)
        self.ctx = dataclasses.replace(self.ctx, settings=self.settings)

    def of(self, kind: NoticeKind) -> list[Notice]:
        """The notices of one kind, in order."""
        return [n for n in self.notices.notices if n.kind == kind]

    async def lab(self, name: str) -> Lab:
        async with self.sessions() as session:
            return await repo.get_latest_by_name(session=session, name=name)

    async def events(self, name: str, kind: str) -> list[str]:
        """Details of the lab's audit events of one kind, oldest first."""
        lab = await self.lab(name)
        async with self.sessions() as session:
            return [e.detail for e in await repo.list_events(session=session, lab_id=lab.id, limit=500)
                    if e.kind == kind]

    async def add_lab(self, name: str, state: LabState, *, expires_in: timedelta, created_ago: timedelta = timedelta(
            hours=1), **fields: Any) -> Lab:
        """A lab as the engine would have left it: in ``state``, expiring ``expires_in`` after T0."""
        async with self.sessions() as session, session.begin():
            lab = await repo.create(session=session, name=name, owner="U_OWNER", profile="sandbox",
                                    expires_at=T0 + expires_in, channel="C_LABS")
            lab.created_at = T0 - created_ago
            lab.state = state
            for key, value in fields.items():
                setattr(lab, key, value)
            await repo.save(session=session)
            return lab

    async def fail_destroy(self, name: str, *, attempts: int, at: datetime) -> None:
        """Leave the lab as the pipeline does when a destroy gives up: failed at ``destroy``, noted at ``at``."""
        async with self.sessions() as session, session.begin():
            lab = await repo.get_latest_by_name(session=session, name=name)
            lab.state, lab.failed_step = LabState.FAILED, "destroy"
            lab.destroy_attempts, lab.error = attempts, "the lab platform still holds vm1 after destroy"
            await repo.add_event_at(session=session, lab_id=lab.id, actor="labbot", kind="state:failed",
                                    detail="destroying → failed", at=at)
            await repo.save(session=session)

    async def update(self, name: str, **fields: Any) -> None:
        async with self.sessions() as session, session.begin():
            lab = await repo.get_latest_by_name(session=session, name=name)
            for key, value in fields.items():
                setattr(lab, key, value)
            await repo.save(session=session)


def names(notices: Iterable[Notice]) -> list[str]:
    """The lab names of some notices, in order."""
    return [n.lab.name for n in notices]


@pytest.fixture
async def outer_sim() -> AsyncIterator[RunningSimulator]:
    """The lab platform simulator, seeded from the profiles, on a free loopback port."""
    async with serve_simulator("outer") as sim:
        yield sim


@pytest.fixture
async def world(database_url: str, outer_sim: RunningSimulator) -> AsyncIterator[World]:
    """A Runtime on a fresh migrated database of each kind, against the outer simulator."""
    settings = settings_for(database_url, outer_sim.url)
    notices = RecordingNotifier()
    rt = Runtime(settings, profiles=PROFILES, notifiers=[notices])
    platform = ZStackClient(outer_sim.url, "admin", SecretStr("password"), poll_policy=FAST_POLL,
                            retry_policy=RetryPolicy(attempts=2, initial=0.01))
    kicked: list[int] = []
    health = ScriptedHealth(rt.sessions)
    ctx = dataclasses.replace(SweepContext.from_runtime(rt), kick=kicked.append, health=health, platform=platform)
    try:
        yield World(settings, rt, ctx, notices, kicked, health, outer_sim)
    finally:
        await platform.aclose()
        await rt.stop()
