"""The engine with small real jobs: background work, destroy during a build, leases across two engines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.profiles import load_profiles
from config.settings import Settings
from sandbox.zstack_sim.server import serve_simulator
from services.errors import ConflictError, NotFoundError, PermissionDeniedError, QuotaError
from services.labs import repository as repo
from services.labs.engine import LabEngine
from services.labs.lifecycle import Lifecycle
from services.labs.models import LabState
from services.labs.notifier import NoticeKind, RecordingNotifier
from services.labs.runtime import Runtime
from services.labs.service import Actor, LabService

PROFILES = load_profiles(Path(__file__).resolve().parents[2] / "config" / "profiles")
Sessions = async_sessionmaker[AsyncSession]


def _settings(**kw: object) -> Settings:
    return Settings(database_url="sqlite+aiosqlite:///unused.db", default_profile="sandbox", lease_seconds=10, **kw)


class Jobs:
    """Builds that wait for a gate (so a test can act mid-build) and destroys that just succeed."""

    def __init__(self, sessions: Sessions, notifier: RecordingNotifier) -> None:
        self.sessions, self.notifier = sessions, notifier
        self.lifecycle = Lifecycle(sessions=sessions, notifier=notifier)
        self.gate = asyncio.Event()
        self.builds: list[int] = []
        self.destroys: list[int] = []

    async def build(self, lab_id: int, attention: asyncio.Event) -> None:
        self.builds.append(lab_id)
        await self.lifecycle.move(lab_id, LabState.PROVISIONING, notice=NoticeKind.STEP_STARTED)
        await self.gate.wait()
        await self.lifecycle.move(lab_id, LabState.READY, notice=NoticeKind.READY)

    async def destroy(self, lab_id: int, attention: asyncio.Event) -> None:
        self.destroys.append(lab_id)
        await self.lifecycle.move(lab_id, LabState.DESTROYED, notice=NoticeKind.DESTROYED)


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition set by background tasks (a loaded machine may take a while)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def _until_state(service: LabService, name: str, state: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while (await service.status(name)).state != state:
            await asyncio.sleep(0.02)


@pytest.fixture
async def world(sessions: Sessions):
    notifier = RecordingNotifier()
    jobs = Jobs(sessions, notifier)
    settings = _settings(max_labs_per_user=2)
    engine = LabEngine(sessions=sessions, settings=settings, notifier=notifier, build=jobs.build,
                       destroy=jobs.destroy, poll_interval=0.1)
    service = LabService(sessions=sessions, settings=settings, profiles=PROFILES, notifier=notifier, kicker=engine)
    await engine.start()
    try:
        yield service, engine, jobs, notifier
    finally:
        await engine.stop()


async def test_create_build_ready_destroy(world) -> None:
    service, engine, jobs, notifier = world
    alice = Actor("U_ALICE")
    lab = await service.create(alice, name="demo")
    jobs.gate.set()
    await engine.wait_idle(lab.id, timeout=5)
    assert (await service.status("demo")).state == LabState.READY
    await service.destroy(alice, "demo")
    await engine.wait_idle(lab.id, timeout=5)
    assert (await service.status("demo")).state == LabState.DESTROYED
    assert jobs.builds == [lab.id] and jobs.destroys == [lab.id]
    assert notifier.kinds("demo") == [NoticeKind.CREATED, NoticeKind.STEP_STARTED, NoticeKind.READY,
                                      NoticeKind.DESTROYING, NoticeKind.DESTROYED]


async def test_destroy_during_build_stops_the_build(world) -> None:
    service, engine, jobs, _ = world
    lab = await service.create(Actor("U1"), name="half")
    await _until(lambda: jobs.builds == [lab.id])
    await _until_state(service, "half", LabState.PROVISIONING)
    await service.destroy(Actor("U1"), "half")
    await engine.wait_idle(lab.id, timeout=5)
    assert (await service.status("half")).state == LabState.DESTROYED
    assert jobs.destroys == [lab.id]


async def test_rules_change_nothing(world) -> None:
    service, engine, jobs, _ = world
    await service.create(Actor("U1"), name="one")
    await service.create(Actor("U1"), name="two")
    with pytest.raises(QuotaError, match="already have 2 live labs"):
        await service.create(Actor("U1"), name="three")
    with pytest.raises(ConflictError, match="a live lab is already called `one`"):
        await service.create(Actor("U2"), name="one")
    with pytest.raises(QuotaError, match="at most 1d"):
        await service.create(Actor("U2"), name="long", ttl=__import__("datetime").timedelta(days=3))
    with pytest.raises(PermissionDeniedError, match="only <@U1>"):
        await service.destroy(Actor("U2"), "one")
    with pytest.raises(PermissionDeniedError):
        await service.extend(Actor("U2"), "one")
    admin = Actor("UADMIN", is_admin=True)
    assert [lab.name for lab in await service.list_labs(admin, everything=True)] == ["two", "one"]
    jobs.gate.set()
    await engine.wait_idle(timeout=5)


async def test_extend_is_capped_at_max_lifetime(world) -> None:
    service, engine, jobs, _ = world
    jobs.gate.set()
    lab = await service.create(Actor("U1"), name="ext")
    await engine.wait_idle(lab.id, timeout=5)
    longer = await service.extend(Actor("U1"), "ext")
    assert longer.expires_at > lab.expires_at and longer.ttl_extensions == 1
    capped = await service.extend(Actor("U1"), "ext", __import__("datetime").timedelta(days=5))
    assert capped.expires_at == capped.created_at + PROFILES["sandbox"].max_ttl
    with pytest.raises(QuotaError, match="maximum lifetime"):
        await service.extend(Actor("U1"), "ext")


async def test_a_lab_is_worked_on_by_one_engine_and_taken_over_when_it_dies(sessions: Sessions) -> None:
    notifier = RecordingNotifier()
    jobs_a, jobs_b = Jobs(sessions, notifier), Jobs(sessions, notifier)
    settings = _settings()
    engine_a = LabEngine(sessions=sessions, settings=settings, notifier=notifier, build=jobs_a.build,
                         destroy=jobs_a.destroy, owner="A", poll_interval=0.05)
    engine_b = LabEngine(sessions=sessions, settings=settings, notifier=notifier, build=jobs_b.build,
                         destroy=jobs_b.destroy, owner="B", poll_interval=0.05)
    service = LabService(sessions=sessions, settings=settings, profiles=PROFILES, notifier=notifier, kicker=engine_a)
    await engine_a.start()
    await engine_b.start()
    try:
        lab = await service.create(Actor("U1"), name="shared")
        await _until(lambda: jobs_a.builds == [lab.id])
        await asyncio.sleep(0.3)  # B polls six times meanwhile ...
        assert jobs_b.builds == []  # ... and leaves the lab alone: A holds the lease
        await engine_a.stop()  # A dies mid-build (its lease is released on a clean stop)
        await _until(lambda: jobs_b.builds == [lab.id])
        jobs_b.gate.set()
        await engine_b.wait_idle(lab.id, timeout=5)
        assert (await service.status("shared")).state == LabState.READY
    finally:
        await engine_a.stop()
        await engine_b.stop()


async def test_progress_ref_does_not_make_the_engines_write_stale(sessions: Sessions) -> None:
    notifier = RecordingNotifier()
    service = LabService(sessions=sessions, settings=_settings(), profiles=PROFILES, notifier=notifier)
    lab = await service.create(Actor("U1"), name="card")
    async with sessions() as session, session.begin():
        row = await repo.get(session=session, lab_id=lab.id)  # the engine has read the lab (version v) ...
        version = row.version
        await service.set_progress_ref(lab.id, "C123:1700000000.000100")  # ... the front end posts its card ...
        row.vm1_public_ip = "198.18.0.10"
        await repo.save(session=session)  # ... and the engine's optimistic write still lands
    async with sessions() as session:
        row = await repo.get(session=session, lab_id=lab.id)
        assert (row.progress_ref, row.vm1_public_ip, row.version) == ("C123:1700000000.000100", "198.18.0.10",
                                                                      version + 1)
    with pytest.raises(NotFoundError):
        await service.set_progress_ref(lab.id + 1000, "C1:1")


async def test_a_runtime_runs_the_jobs_it_is_given(database_url: str, sessions: Sessions, tmp_path: Path) -> None:
    async with serve_simulator("outer") as sim:
        settings = _settings(platform_url=sim.url, platform_account="admin", platform_password=SecretStr("password"),
                             state_dir=tmp_path).model_copy(update={"database_url": database_url})
        notifier = RecordingNotifier()
        jobs = Jobs(sessions, notifier)
        jobs.gate.set()
        runtime = Runtime(settings, profiles=PROFILES, jobs=jobs, engine_poll_interval=0.1)
        await runtime.start()
        try:
            lab = await runtime.service.create(Actor("U1"), name="seam")
            await runtime.engine.wait_idle(lab.id, timeout=5)
            assert (await runtime.service.status("seam")).state == LabState.READY
            await runtime.service.destroy(Actor("U1"), "seam")
            await runtime.engine.wait_idle(lab.id, timeout=5)
        finally:
            await runtime.stop()
    assert jobs.builds == [lab.id] and jobs.destroys == [lab.id]
    assert sim.state.count("vm") == 0  # the pipeline never ran


async def test_at_most_max_concurrent_jobs_run_and_waiting_labs_hold_no_lease(sessions: Sessions) -> None:
    notifier = RecordingNotifier()
    jobs = Jobs(sessions, notifier)
    settings = _settings(max_labs_per_user=5, max_concurrent_jobs=2)
    engine = LabEngine(sessions=sessions, settings=settings, notifier=notifier, build=jobs.build,
                       destroy=jobs.destroy, owner="A", poll_interval=0.05)
    service = LabService(sessions=sessions, settings=settings, profiles=PROFILES, notifier=notifier, kicker=engine)
    await engine.start()
    try:
        labs = [await service.create(Actor("U1"), name=f"queue{i}") for i in range(4)]
        await _until(lambda: len(jobs.builds) == 2)
        await asyncio.sleep(0.3)  # several polls: still only two builds, the others wait unclaimed
        assert len(jobs.builds) == 2
        assert engine.running_labs == sorted(jobs.builds) and len(engine.busy_labs) == 4
        async with sessions() as session:
            owners = {lab.id: (await repo.get(session=session, lab_id=lab.id)).lease_owner for lab in labs}
        assert sorted(owner for owner in owners.values() if owner) == ["A", "A"]
        assert {lab_id for lab_id, owner in owners.items() if owner} == set(jobs.builds)
        jobs.gate.set()
        await _until(lambda: len(jobs.builds) == 4)
        await engine.wait_idle(timeout=10)
        assert {(await service.status(lab.name)).state for lab in labs} == {LabState.READY}
    finally:
        await engine.stop()


def test_a_busy_database_pool_is_a_transient_failure_of_a_step() -> None:
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    from services.labs.build.pipeline import is_transient

    assert is_transient(PoolTimeoutError("QueuePool limit of size 10 overflow 5 reached"))
    assert not is_transient(ValueError("a bug stays a failure"))
