"""A real lab service, engine and database behind the Slack side, with small real build and destroy jobs.

The jobs move labs through their states with ``services.labs.lifecycle.Lifecycle.move``, write steps and their
progress to the database and emit the notices the real pipeline emits, so the Slack side is tested against the real
service, engine and repository without the sandbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.profiles import load_profiles
from config.settings import Settings
from services.crypto import SecretBox
from services.db import utcnow
from services.labs import repository as repo
from services.labs.engine import LabEngine
from services.labs.lifecycle import Lifecycle
from services.labs.models import LabState, StepState
from services.labs.notifier import FanOut, Notice, NoticeKind, Notifier, RecordingNotifier
from services.labs.service import LabService
from services.labs.views import lab_view
from tests.slack.factories import STEP_NAMES

PROFILES = load_profiles(Path(__file__).resolve().parents[2] / "config" / "profiles")
Sessions = async_sessionmaker[AsyncSession]
BOT_TOKEN = "xoxb-fake-0000000000"
APP_TOKEN = "xapp-fake-0000000000"
SIGNING_SECRET = "labbot-test-signing-secret-0001"


def settings(**overrides: Any) -> Settings:
    """Settings for Slack tests (tokens of the fake Slack, a real secret key)."""
    base: dict[str, Any] = dict(
        database_url="sqlite+aiosqlite:///unused.db", default_profile="sandbox", lease_seconds=10,
        slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET, secret_key="labbot-test-key-0123456789abcdef",
        channel="C_LABS", admin_users=["U_ADMIN"], max_labs_per_user=3,
    )
    base.update(overrides)
    return Settings(**base)


class ScriptedJobs:
    """Build: every step runs, reports ``progress_events`` progress updates, finishes; destroy just succeeds.

    ``gate`` (when set) holds the build after its first step so a test can act mid-build; ``fail_at`` makes that
    step fail with an output tail.
    """

    def __init__(self, sessions: Sessions, notifier: Notifier, *, progress_events: int = 20,
                 fail_at: str | None = None, step_delay: float = 0.0, box: SecretBox | None = None) -> None:
        self.sessions, self.notifier, self.box = sessions, notifier, box
        self.lifecycle = Lifecycle(sessions=sessions, notifier=notifier)
        self.progress_events, self.fail_at, self.step_delay = progress_events, fail_at, step_delay
        self.gate: asyncio.Event | None = None
        self.builds: list[int] = []
        self.destroys: list[int] = []
        self.notices = 0

    async def _notify(self, kind: NoticeKind, lab_id: int, step: str | None = None) -> None:
        async with self.sessions() as session:
            lab = await repo.get(session=session, lab_id=lab_id)
            steps = await repo.list_steps(session=session, lab_id=lab_id)
            view = lab_view(lab, steps)
        step_view = next((s for s in view.steps if s.name == step), None)
        self.notices += 1
        await self.notifier.notify(Notice(kind, view, step=step_view))

    async def _set_step(self, lab_id: int, name: str, **fields: Any) -> None:
        async with self.sessions() as session, session.begin():
            row = await repo.get_step(session=session, lab_id=lab_id, name=name)
            for key, value in fields.items():
                setattr(row, key, value)

    async def build(self, lab_id: int, attention: asyncio.Event) -> None:
        self.builds.append(lab_id)
        await self.lifecycle.move(lab_id, LabState.PROVISIONING, notice=NoticeKind.STEP_STARTED)
        async with self.sessions() as session, session.begin():
            await repo.ensure_steps(session=session, lab_id=lab_id, names=[n for n, _ in STEP_NAMES])
        for index, (name, _title) in enumerate(STEP_NAMES):
            async with self.sessions() as session, session.begin():
                row = await repo.get_step(session=session, lab_id=lab_id, name=name)
                if row.state == StepState.DONE:
                    continue
                row.state, row.started_at, row.attempt = StepState.RUNNING, utcnow(), row.attempt + 1
                row.error = row.finished_at = None
            await self._notify(NoticeKind.STEP_STARTED, lab_id, name)
            for i in range(self.progress_events):
                await self._set_step(lab_id, name, progress=f"working: {100 * (i + 1) // self.progress_events}%")
                await self._notify(NoticeKind.STEP_PROGRESS, lab_id, name)
            if self.step_delay:
                await asyncio.sleep(self.step_delay)
            if name == self.fail_at:
                await self._set_step(lab_id, name, state=StepState.FAILED, finished_at=utcnow(),
                                     error="installer exited with status 3",
                                     output_tail="unpacking…\nERROR: no space left on device\n")
                await self._notify(NoticeKind.STEP_FAILED, lab_id, name)
                await self.lifecycle.move(lab_id, LabState.FAILED, notice=NoticeKind.FAILED,
                           detail="step failed", fields={"failed_step": name,
                                                          "error": "installer exited with status 3"})
                return
            await self._set_step(lab_id, name, state=StepState.DONE, finished_at=utcnow())
            await self._notify(NoticeKind.STEP_FINISHED, lab_id, name)
            if index == 0 and self.gate is not None:
                await self.gate.wait()
        secret = {"host_password_enc": self.box.encrypt(SecretStr("root-pass-of-the-lab"))} if self.box else {}
        await self.lifecycle.move(lab_id, LabState.READY, notice=NoticeKind.READY,
                                  fields={"vm1_public_ip": "198.18.0.10", "vm1_vpc_ip": "198.19.0.10",
                                          "vm2_ip": "198.19.0.11", "iscsi_iqn": "iqn.2026-11.io.labbot:lab",
                                          "summary": {"nested_vm": "nested-vm1 Running"}, **secret})

    async def destroy(self, lab_id: int, attention: asyncio.Event) -> None:
        self.destroys.append(lab_id)
        await self.lifecycle.move(lab_id, LabState.DESTROYED, notice=NoticeKind.DESTROYED)


@dataclass
class World:
    """Service, engine, jobs and the notices they emitted."""

    service: LabService
    engine: LabEngine
    jobs: ScriptedJobs
    fanout: FanOut
    recorder: RecordingNotifier
    settings: Settings


async def make_world(sessions: Sessions, *, settings_: Settings | None = None, start: bool = True,
                     **job_options: Any) -> World:
    """An engine (started unless told) and a service whose notices fan out to a recorder (add the Slack notifier
    to ``fanout``)."""
    recorder = RecordingNotifier()
    fanout = FanOut([recorder])
    cfg = settings_ or settings()
    box = SecretBox(cfg.secret_key)
    jobs = ScriptedJobs(sessions, fanout, box=box, **job_options)
    engine = LabEngine(sessions=sessions, settings=cfg, notifier=fanout, build=jobs.build, destroy=jobs.destroy,
                       poll_interval=0.2)
    service = LabService(sessions=sessions, settings=cfg, profiles=PROFILES, notifier=fanout, kicker=engine, box=box)
    if start:
        await engine.start()
    return World(service, engine, jobs, fanout, recorder, cfg)


class WorldDomain:
    """A World as bot.app.Domain: what the Slack front end starts, drives and stops."""

    def __init__(self, world: World, sessions: Sessions) -> None:
        self.world = world
        self.service, self.notifier, self.engine = world.service, world.fanout, world.engine
        self.profiles, self.sessions = PROFILES, sessions

    async def start(self) -> None:
        await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()
