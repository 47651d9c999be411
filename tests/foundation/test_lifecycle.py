"""The lifecycle is the one writer of lab state: edges checked, decisions re-made on lost locks, announced once."""

from __future__ import annotations

import ast
import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings, load_settings
from services.db import PROJECT_ROOT, utcnow
from services.errors import InvalidTransitionError, PermissionDeniedError
from services.labs import repository as repo
from services.labs.lifecycle import Change, Event, Lifecycle, destroy_backoff
from services.labs.models import Lab, LabState
from services.labs.notifier import NoticeKind, RecordingNotifier

Sessions = async_sessionmaker[AsyncSession]


async def _lab(lifecycle: Lifecycle, name: str = "demo") -> int:
    view = await lifecycle.create(name=name, owner="U1", profile="sandbox", channel=None,
                                  expires_at=utcnow() + timedelta(hours=2), detail="test")
    return view.id


async def _events(sessions: Sessions, lab_id: int) -> list[tuple[str, str, str]]:
    async with sessions() as session:
        return [(e.actor, e.kind, e.detail) for e in await repo.list_events(session=session, lab_id=lab_id)]


async def test_create_records_announces_and_kicks(sessions: Sessions) -> None:
    notifier, kicked = RecordingNotifier(), []
    lifecycle = Lifecycle(sessions=sessions, notifier=notifier, kick=kicked.append)
    lab_id = await _lab(lifecycle)
    assert notifier.kinds() == [NoticeKind.CREATED]
    assert kicked == [lab_id]
    assert await _events(sessions, lab_id) == [("U1", "created", "test")]


async def test_a_change_writes_fields_events_and_announces_after_the_commit(sessions: Sessions) -> None:
    notifier, kicked = RecordingNotifier(), []
    lifecycle = Lifecycle(sessions=sessions, notifier=notifier, kick=kicked.append)
    lab_id = await _lab(lifecycle)
    seen_by_notifier: list[str] = []

    async def check_committed(notice: object) -> None:
        async with sessions() as session:  # another session sees the change: it was committed before the notice
            seen_by_notifier.append((await repo.get(session=session, lab_id=lab_id)).state)

    notifier.notify = check_committed  # type: ignore[method-assign]
    view = await lifecycle.apply(
        lambda lab: Change(to=LabState.DESTROYING, fields={"destroy_requested_by": "U2"}, detail="asked",
                           events=(Event("note", "why"),), notice=NoticeKind.DESTROYING, kick=True),
        actor="U2", name="demo",
    )
    assert view is not None and view.state == LabState.DESTROYING
    assert seen_by_notifier == [LabState.DESTROYING]
    assert kicked == [lab_id, lab_id]
    assert (await _events(sessions, lab_id))[1:] == [("U2", "state:destroying", "asked"), ("U2", "note", "why")]
    async with sessions() as session:
        assert (await repo.get(session=session, lab_id=lab_id)).destroy_requested_by == "U2"


async def test_an_edge_the_state_machine_lacks_changes_nothing(sessions: Sessions) -> None:
    notifier = RecordingNotifier()
    lifecycle = Lifecycle(sessions=sessions, notifier=notifier)
    lab_id = await _lab(lifecycle)
    with pytest.raises(InvalidTransitionError, match="requested; it cannot become ready"):
        await lifecycle.move(lab_id, LabState.READY, notice=NoticeKind.READY, fields={"error": "x"})
    async with sessions() as session:
        lab = await repo.get(session=session, lab_id=lab_id)
        assert (lab.state, lab.error) == (LabState.REQUESTED, None)
    assert notifier.kinds() == [NoticeKind.CREATED]


async def test_a_refusal_and_a_no_op_change_nothing(sessions: Sessions) -> None:
    notifier = RecordingNotifier()
    lifecycle = Lifecycle(sessions=sessions, notifier=notifier)
    lab_id = await _lab(lifecycle)

    def refuse(lab: Lab) -> Change:
        raise PermissionDeniedError("not yours")

    with pytest.raises(PermissionDeniedError):
        await lifecycle.apply(refuse, actor="U9", lab_id=lab_id)
    assert await lifecycle.move(lab_id, LabState.READY, only_from=frozenset({LabState.PROVISIONING})) is None
    assert await _events(sessions, lab_id) == [("U1", "created", "test")]
    assert notifier.kinds() == [NoticeKind.CREATED]


async def test_concurrent_changes_each_decide_on_the_row_they_write(sessions: Sessions) -> None:
    """Five increments at once: every lost optimistic lock re-reads and decides again, so none is lost."""
    lifecycle = Lifecycle(sessions=sessions, notifier=RecordingNotifier())
    lab_id = await _lab(lifecycle)
    decisions: list[int] = []

    def increment(lab: Lab) -> Change:
        decisions.append(lab.ttl_extensions)
        return Change(fields={"ttl_extensions": lab.ttl_extensions + 1})

    await asyncio.gather(*(lifecycle.apply(increment, actor="U1", lab_id=lab_id) for _ in range(5)))
    async with sessions() as session:
        assert (await repo.get(session=session, lab_id=lab_id)).ttl_extensions == 5
    assert len(decisions) >= 5 and set(range(5)) <= set(decisions)


def test_destroy_backoff_doubles_and_is_capped() -> None:
    settings: Settings = load_settings(destroy_retry_base_seconds=60, destroy_retry_max_seconds=3600)
    assert [destroy_backoff(settings, n).total_seconds() for n in (1, 2, 3, 4, 5, 6, 7, 20)] == [
        60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_only_the_lifecycle_writes_lab_state() -> None:
    """``repository.transition`` (the state-machine edge) is called from the lifecycle and nowhere else."""
    callers = []
    for package in ("bot", "handlers", "services", "config"):
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr == "transition":
                    callers.append(str(path.relative_to(PROJECT_ROOT)))
    assert sorted(set(callers)) == ["services/labs/lifecycle.py"]
