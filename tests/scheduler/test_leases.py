"""The engine's work lease, checked for what replicas rely on: it is renewed while the work runs.

A build that lasts several lease lengths must stay with the engine that started it, however eagerly another
engine polls; a holder that stops renewing loses the lab to the other engine after the lease runs out.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from services.labs import repository as repo
from services.labs.engine import LabEngine
from services.labs.lifecycle import Lifecycle
from services.labs.models import LabState
from services.labs.notifier import NoticeKind, RecordingNotifier
from services.labs.service import Actor, LabService
from tests.scheduler.conftest import PROFILES

Sessions = async_sessionmaker[AsyncSession]


class SlowBuilds:
    """Builds that take ``seconds`` and note which engine ran them."""

    def __init__(self, sessions: Sessions, name: str, seconds: float) -> None:
        self.sessions, self.name, self.seconds = sessions, name, seconds
        self.lifecycle = Lifecycle(sessions=sessions, notifier=RecordingNotifier())
        self.builds: list[int] = []

    async def build(self, lab_id: int, attention: asyncio.Event) -> None:
        self.builds.append(lab_id)
        await self.lifecycle.move(lab_id, LabState.PROVISIONING)
        await asyncio.sleep(self.seconds)
        await self.lifecycle.move(lab_id, LabState.READY, notice=NoticeKind.READY,
                   actor=self.name)

    async def destroy(self, lab_id: int, attention: asyncio.Event) -> None:
        await self.lifecycle.move(lab_id, LabState.DESTROYED)


def _settings(database_url: str) -> Settings:
    # One-second leases (below the setting's minimum, hence model_copy) so the test spans several renewals.
    base = Settings(database_url=database_url, default_profile="sandbox")
    return base.model_copy(update={"lease_seconds": 1})


async def test_a_lease_is_renewed_while_the_build_runs(sessions: Sessions, database_url: str) -> None:
    settings = _settings(database_url)
    a_jobs, b_jobs = SlowBuilds(sessions, "A", 2.5), SlowBuilds(sessions, "B", 2.5)
    a = LabEngine(sessions=sessions, settings=settings, notifier=RecordingNotifier(), build=a_jobs.build,
                  destroy=a_jobs.destroy, owner="A", poll_interval=0.05)
    b = LabEngine(sessions=sessions, settings=settings, notifier=RecordingNotifier(), build=b_jobs.build,
                  destroy=b_jobs.destroy, owner="B", poll_interval=0.05)
    service = LabService(sessions=sessions, settings=settings, profiles=PROFILES, notifier=RecordingNotifier(),
                         kicker=a)
    await a.start()
    lab = await service.create(Actor("U1"), name="long")
    await asyncio.sleep(0.1)
    await b.start()
    try:
        await a.wait_idle(lab.id, timeout=10)
        async with sessions() as session:
            row = await repo.get(session=session, lab_id=lab.id)
        assert row.state == LabState.READY and a_jobs.builds == [lab.id] and b_jobs.builds == []
    finally:
        await a.stop()
        await b.stop()


async def test_a_holder_that_stops_renewing_loses_the_lab(sessions: Sessions, database_url: str) -> None:
    settings = _settings(database_url)
    b_jobs = SlowBuilds(sessions, "B", 0.1)
    service = LabService(sessions=sessions, settings=settings, profiles=PROFILES, notifier=RecordingNotifier())
    lab = await service.create(Actor("U1"), name="orphaned")
    async with sessions() as session, session.begin():  # a process took the lab, then died without a trace
        assert await repo.claim(session=session, lab_id=lab.id, owner="dead", seconds=1)
    b = LabEngine(sessions=sessions, settings=settings, notifier=RecordingNotifier(), build=b_jobs.build,
                  destroy=b_jobs.destroy, owner="B", poll_interval=0.05)
    await b.start()
    try:
        assert b_jobs.builds == []  # the dead process's lease still runs
        async with asyncio.timeout(5):
            while not b_jobs.builds:
                await asyncio.sleep(0.05)
        await b.wait_idle(lab.id, timeout=5)
        assert (await service.view(lab.id)).state == LabState.READY
    finally:
        await b.stop()
