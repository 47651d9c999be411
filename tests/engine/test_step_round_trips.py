"""A build step's bookkeeping costs at most 3 database round trips, however chatty the step is."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config.settings import load_settings
from services.crypto import SecretBox
from services.labs import repository as repo
from services.labs.build.context import LabContext
from services.labs.build.steps import TITLES
from services.labs.models import LabState, StepState
from services.labs.notifier import NoticeKind, RecordingNotifier
from services.labs.service import Actor, LabService
from tests.reliability.driver import PROFILES


async def _context(sessions: async_sessionmaker[AsyncSession]) -> tuple[LabContext, RecordingNotifier, LabService]:
    settings = load_settings(default_profile="sandbox")
    service = LabService(sessions=sessions, settings=settings, profiles=PROFILES, notifier=RecordingNotifier())
    view = await service.create(Actor("U1"), name="trips")
    async with sessions() as session, session.begin():
        await repo.ensure_steps(session=session, lab_id=view.id, names=list(TITLES))
    notifier = RecordingNotifier()
    ctx = LabContext(lab_id=view.id, lab_uuid=view.uuid, lab_name=view.name, profile=PROFILES["sandbox"],
                     settings=settings, sessions=sessions, notifier=notifier, box=SecretBox(settings.secret_key),
                     connections=None, titles=TITLES)
    await ctx.refresh()  # as the build does before its steps
    return ctx, notifier, service


class RoundTrips:
    """Statements and commits sent on ``engine`` while counting."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine, self.count = engine.sync_engine, 0

    def _one(self, *_: Any) -> None:
        self.count += 1

    def __enter__(self) -> RoundTrips:
        event.listen(self.engine, "before_cursor_execute", self._one)
        event.listen(self.engine, "commit", self._one)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._one)
        event.remove(self.engine, "commit", self._one)


async def test_a_chatty_step_costs_three_round_trips(sessions: async_sessionmaker[AsyncSession]) -> None:
    ctx, notifier, _ = await _context(sessions)
    with RoundTrips(sessions.kw["bind"]) as trips:
        assert await ctx.step_started("iscsi_target")
        for i in range(200):
            await ctx.output("iscsi_target", f"line {i}\n")
            await ctx.progress("iscsi_target", f"{i // 2}%")
        await ctx.update(iscsi_iqn="iqn.2026-12.io.labbot:trips", iscsi_wwid="36001405abcdef")
        await ctx.step_ended("iscsi_target", StepState.DONE)
    # the start, the lab's fields, the end with the output tail (200 lines and progress within 5 s: no write)
    assert trips.count <= 3, f"{trips.count} round trips"
    async with sessions() as session:
        lab = await repo.get(session=session, lab_id=ctx.lab_id)
        step = await repo.get_step(session=session, lab_id=ctx.lab_id, name="iscsi_target")
    assert (lab.iscsi_iqn, step.state, step.attempt, step.progress) == (
        "iqn.2026-12.io.labbot:trips", StepState.DONE, 1, None)
    assert step.output_tail is not None and step.output_tail.endswith("line 199\n")
    kinds = notifier.kinds()
    assert kinds[0] == NoticeKind.STEP_STARTED and kinds[-1] == NoticeKind.STEP_FINISHED
    assert notifier.notices[-1].step is not None and notifier.notices[-1].step.state == StepState.DONE


async def test_a_quiet_step_costs_two_and_a_destroy_stops_the_next(sessions: async_sessionmaker[AsyncSession]) -> None:
    ctx, _, service = await _context(sessions)
    with RoundTrips(sessions.kw["bind"]) as trips:
        assert await ctx.step_started("prepare")
        await ctx.step_ended("prepare", StepState.DONE)
    assert trips.count <= 2, f"{trips.count} round trips"
    await service.destroy(Actor("U1"), "trips")
    assert not await ctx.step_started("create_vms")  # the step boundary a destroy stops the build at
    async with sessions() as session:
        lab = await repo.get(session=session, lab_id=ctx.lab_id)
        step = await repo.get_step(session=session, lab_id=ctx.lab_id, name="create_vms")
    assert (lab.state, step.state, step.attempt) == (LabState.DESTROYING, StepState.PENDING, 0)


async def test_someone_elses_write_is_kept_and_ours_retried(sessions: async_sessionmaker[AsyncSession]) -> None:
    ctx, _, service = await _context(sessions)
    await service.extend(Actor("U1"), "trips")  # bumps the version under the build's copy
    await ctx.set_nested(zone="z")
    async with sessions() as session:
        lab = await repo.get(session=session, lab_id=ctx.lab_id)
    assert lab.ttl_extensions == 1 and lab.nested_ids == {"zone": "z"}
