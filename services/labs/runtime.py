"""Wiring of labbot's domain side: database, lab platform client, pipeline, engine and service.

Front ends (console, Slack) build one ``Runtime``, add their notifier, ``start`` it (migration check, resume
of unfinished labs) and call ``runtime.service``. Nothing here knows which front end is in use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config.profiles import LabProfile, load_profiles
from config.settings import Settings
from services import db
from services.capture.service import CaptureService
from services.crypto import SecretBox
from services.doctor import run_doctor
from services.i18n import set_default_language
from services.labs import repository as repo
from services.labs.baking import BakeService
from services.labs.build.health import HealthReport
from services.labs.build.pipeline import LabPipeline, StepHook
from services.labs.build.steps import TITLES
from services.labs.capacity import check_capacity
from services.labs.engine import LabEngine
from services.labs.lifecycle import Lifecycle
from services.labs.notifier import FanOut, Notifier
from services.labs.preflight import Check
from services.labs.service import LabService
from services.zstack.client import ZStackClient

log = logging.getLogger(__name__)


class LabJobs(Protocol):
    """The engine's work: build and destroy one lab (``LabPipeline`` in production)."""

    async def build(self, lab_id: int, attention: asyncio.Event) -> None:
        """Build (or resume building) the lab."""

    async def destroy(self, lab_id: int, attention: asyncio.Event) -> None:
        """Tear the lab down."""


class Runtime:
    """The running domain: one per process."""

    def __init__(
        self,
        settings: Settings,
        *,
        profiles: dict[str, LabProfile] | None = None,
        notifiers: Sequence[Notifier] = (),
        platform_transport: httpx.AsyncBaseTransport | None = None,
        after_step: StepHook | None = None,
        engine_poll_interval: float = 10.0,
        owner: str | None = None,
        jobs: LabJobs | None = None,
    ) -> None:
        """``jobs`` replaces the pipeline's build and destroy (tests and benchmarks of the engine and the front
        ends); health checks and everything else stay real."""
        self.settings = settings
        set_default_language(settings.language)
        self.profiles = profiles or load_profiles(settings.profiles_dir)
        self.notifier = FanOut(notifiers)
        self.db_engine: AsyncEngine = db.make_engine(settings.database_url)
        self.sessions: async_sessionmaker[AsyncSession] = db.make_sessionmaker(self.db_engine)
        self.box = SecretBox(settings.secret_key)
        # Health runs open SSH sessions into labs: the sweep and on-demand checks share one bound.
        self.health_gate = asyncio.Semaphore(settings.health_concurrency)
        self.outer = ZStackClient(settings.platform_url, settings.platform_account, settings.platform_password,
                                  transport=platform_transport, timeout=settings.platform_timeout_seconds)
        self.host_keys = repo.DatabaseHostKeyStore(self.sessions)
        self.lifecycle = Lifecycle(sessions=self.sessions, notifier=self.notifier, titles=TITLES)
        self.pipeline = LabPipeline(sessions=self.sessions, settings=settings, profiles=self.profiles,
                                    notifier=self.notifier, lifecycle=self.lifecycle, outer=self.outer,
                                    host_keys=self.host_keys, box=self.box, after_step=after_step)
        self.jobs: LabJobs = jobs if jobs is not None else self.pipeline
        self.engine = LabEngine(sessions=self.sessions, settings=settings, notifier=self.notifier,
                                build=self.jobs.build, destroy=self.jobs.destroy, owner=owner,
                                poll_interval=engine_poll_interval)
        self.lifecycle.kick = self.engine.kick
        self.captures = CaptureService(sessions=self.sessions, settings=settings, profiles=self.profiles,
                                       box=self.box, host_keys=self.host_keys, notifier=self.notifier)
        self.notifier.add(self.captures)  # a destroyed lab's captures are deleted with it
        self.service = LabService(sessions=self.sessions, settings=settings, profiles=self.profiles,
                                  notifier=self.notifier, lifecycle=self.lifecycle, step_titles=TITLES, box=self.box,
                                  health_runner=self.run_health, capacity_check=self.check_capacity,
                                  exercise_checker=self.pipeline.check_exercise,
                                  hand_over=self.pipeline.hand_over, doctor_runner=self.doctor,
                                  capture_runner=self.captures.capture)
        self.baking = BakeService(self.service, bake=self.pipeline.bake, hold=self.engine.hold,
                                  wait_idle=self.wait_idle)

    async def wait_idle(self, lab_id: int, timeout: float) -> None:  # noqa: ASYNC109 - a build's own budget
        """Until the engine has nothing left to do on the lab (its build or destroy ended)."""
        await self.engine.wait_idle(lab_id, timeout=timeout)

    async def run_health(self, lab_id: int) -> HealthReport:
        """One lab's health checks, within the process-wide bound the sweep and on-demand checks share."""
        async with self.health_gate:
            return await self.pipeline.health(lab_id)

    async def check_capacity(self, profile: LabProfile) -> None:
        """Whether the lab platform has room for a lab of ``profile`` now (CapacityError if not)."""
        await check_capacity(self.outer, profile)

    async def doctor(self, profile: str | None) -> list[Check]:
        """``labbot doctor``'s checks (without Slack's, which the front end adds) for ``/lab doctor``."""
        return await run_doctor(self.settings, self.profiles, profile, outer=self.outer, sessions=self.sessions,
                                engine=self.db_engine)

    async def start(self) -> None:
        """Refuse an unmigrated database, then resume unfinished labs."""
        await db.require_migrated(self.db_engine)
        if self.settings.is_sqlite:
            log.info("SQLite database: running as the single labbot process (use PostgreSQL for replicas)")
        await self.engine.start()

    async def stop(self) -> None:
        """Stop background work (labs resume on the next start) and close connections."""
        await self.engine.stop()
        await self.outer.aclose()
        await self.db_engine.dispose()
