"""Labs in the database: creation, unique live names, transitions, optimistic locking, leases (both DBs)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.db import utcnow
from services.errors import ConflictError, InvalidTransitionError, NotFoundError, StaleWriteError
from services.labs import repository as repo
from services.labs.models import LabState, StepState

Sessions = async_sessionmaker[AsyncSession]


async def _new_lab(sessions: Sessions, name: str = "demo", owner: str = "U1") -> int:
    async with sessions() as session, session.begin():
        lab = await repo.create(
            session=session, name=name, owner=owner, profile="sandbox", channel="C1",
            expires_at=utcnow() + timedelta(hours=4),
        )
        return lab.id


async def test_create_and_read_back(sessions: Sessions) -> None:
    lab_id = await _new_lab(sessions)
    async with sessions() as session:
        lab = await repo.get_live_by_name(session=session, name="demo")
        assert lab.id == lab_id and lab.state == LabState.REQUESTED and lab.owner == "U1"
        assert lab.expires_at.tzinfo is not None and lab.expires_at > utcnow()
        assert await repo.count_live(session=session) == 1
        assert await repo.count_live(session=session, owner="U2") == 0
    with pytest.raises(NotFoundError, match="no live lab called `nope`"):
        async with sessions() as session:
            await repo.get_live_by_name(session=session, name="nope")


async def test_live_names_are_unique_but_destroyed_names_free(sessions: Sessions) -> None:
    first = await _new_lab(sessions)
    with pytest.raises(ConflictError, match="a live lab is already called `demo`"):
        await _new_lab(sessions)
    async with sessions() as session, session.begin():
        lab = await repo.get(session=session, lab_id=first)
        for target in (LabState.DESTROYING, LabState.DESTROYED):
            await repo.transition(session=session, lab=lab, target=target, actor="U1")
    second = await _new_lab(sessions)
    assert second != first
    async with sessions() as session:
        assert (await repo.get_live_by_name(session=session, name="demo")).id == second
        assert len(await repo.list_(session=session, states=[s.value for s in LabState])) == 2
        events = await repo.list_events(session=session, lab_id=first)
        assert [e.kind for e in events] == ["state:destroying", "state:destroyed"]


async def test_illegal_transition_changes_nothing(sessions: Sessions) -> None:
    lab_id = await _new_lab(sessions)
    with pytest.raises(InvalidTransitionError, match="is requested; it cannot become ready"):
        async with sessions() as session, session.begin():
            lab = await repo.get(session=session, lab_id=lab_id)
            await repo.transition(session=session, lab=lab, target=LabState.READY, actor="U1")
    async with sessions() as session:
        lab = await repo.get(session=session, lab_id=lab_id)
        assert lab.state == LabState.REQUESTED and lab.version == 1
        assert await repo.list_events(session=session, lab_id=lab_id) == []


async def test_two_writers_one_wins(sessions: Sessions) -> None:
    lab_id = await _new_lab(sessions)
    async with sessions() as first, sessions() as second:
        lab_a = await repo.get(session=first, lab_id=lab_id)
        lab_b = await repo.get(session=second, lab_id=lab_id)
        lab_a.ttl_extensions += 1
        await repo.save(session=first)
        await first.commit()
        lab_b.ttl_extensions += 5
        with pytest.raises(StaleWriteError):
            await repo.save(session=second)
    async with sessions() as session:
        lab = await repo.get(session=session, lab_id=lab_id)
        assert lab.ttl_extensions == 1 and lab.version == 2


async def test_lease_is_exclusive_until_it_expires(sessions: Sessions) -> None:
    lab_id = await _new_lab(sessions)

    async def claim(owner: str, seconds: int = 60) -> bool:
        async with sessions() as session, session.begin():
            return await repo.claim(session=session, lab_id=lab_id, owner=owner, seconds=seconds)

    results = await asyncio.gather(claim("proc-a"), claim("proc-b"))
    assert sorted(results) == [False, True]
    winner = "proc-a" if results[0] else "proc-b"
    loser = "proc-b" if winner == "proc-a" else "proc-a"
    assert await claim(winner)  # renewing our own lease works
    assert not await claim(loser)
    async with sessions() as session, session.begin():
        await repo.release(session=session, lab_id=lab_id, owner=winner)
    assert await claim(loser, seconds=-1)  # an already-expired lease ...
    assert await claim(winner)  # ... is taken over


async def test_steps_are_created_once_in_order(sessions: Sessions) -> None:
    lab_id = await _new_lab(sessions)
    async with sessions() as session, session.begin():
        steps = await repo.ensure_steps(session=session, lab_id=lab_id, names=["a_step", "b_step"])
        steps[0].state = StepState.DONE
    async with sessions() as session, session.begin():
        steps = await repo.ensure_steps(session=session, lab_id=lab_id, names=["a_step", "b_step", "c_step"])
    assert [(s.name, s.state) for s in steps] == [("a_step", "done"), ("b_step", "pending"), ("c_step", "pending")]


async def test_host_key_store_pins_first_key(sessions: Sessions) -> None:
    store = repo.DatabaseHostKeyStore(sessions)
    assert await store.get("lab-uuid", "vm1") is None
    assert await store.pin("lab-uuid", "vm1", "ssh-ed25519 AAAAfirst") == "ssh-ed25519 AAAAfirst"
    # A second first pin (a concurrent connection) keeps the first and says which key is pinned.
    assert await store.pin("lab-uuid", "vm1", "ssh-ed25519 AAAAsecond") == "ssh-ed25519 AAAAfirst"
    assert await store.get("lab-uuid", "vm1") == "ssh-ed25519 AAAAfirst"
    assert await store.pin("lab-uuid", "vm2", "ssh-ed25519 AAAAother") == "ssh-ed25519 AAAAother"
    await store.forget("lab-uuid")
    assert await store.get("lab-uuid", "vm1") is None
