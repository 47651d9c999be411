"""Classes at the service level on SQLite and PostgreSQL: all-or-nothing creation within the quotas, claims that
hold under races (two students never get the same lab), and the trainer's reminder before the labs expire."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.errors import ConflictError, QuotaError
from services.labs.models import LabState
from services.labs.notifier import NoticeKind
from services.labs.service import Actor
from services.scheduler.expiry import expiry_sweep
from tests.scheduler.conftest import T0, World

TRAINER = Actor("U_TRAINER", is_admin=True)


async def test_claims_race_gives_each_lab_to_one_student(world: World) -> None:
    classes = world.rt.service.classes
    await classes.create(TRAINER, name="race", count=3)
    students = [Actor(f"U_S{i}") for i in range(8)]
    results = await asyncio.gather(*(classes.claim(s, "race") for s in students), return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 3 and len(lost) == 5
    assert all(isinstance(e, ConflictError) and "every lab of class `race` has a student" in e.user_message
               for e in lost)
    assert len({lab.name for lab in won}) == 3 and len({lab.owner for lab in won}) == 3
    status = await classes.status("race")
    assert status.claimable == 0 and {lab.owner for lab in status.labs} == {lab.owner for lab in won}


async def test_a_class_is_created_whole_or_not_at_all(world: World) -> None:
    classes = world.rt.service.classes
    world.rt.service.settings = world.settings.model_copy(update={"max_labs_total": 4})
    await world.add_lab("big-02", LabState.READY, expires_in=timedelta(hours=2))
    with pytest.raises(ConflictError, match="big-02"):
        await classes.create(TRAINER, name="big", count=3)
    with pytest.raises(QuotaError, match="no room for 4 more"):
        await classes.create(TRAINER, name="other", count=4)
    async with world.sessions() as session:
        from sqlalchemy import func, select

        from services.labs.models import Lab, LabClass
        assert await session.scalar(select(func.count()).select_from(LabClass)) == 0
        assert await session.scalar(select(func.count()).select_from(Lab)) == 1
    made = await classes.create(TRAINER, name="fits", count=3, students=("U_A",))
    assert [lab.name for lab in made.labs] == ["fits-01", "fits-02", "fits-03"]
    assert [lab.owner for lab in made.labs] == ["U_A", "U_TRAINER", "U_TRAINER"] and made.claimable == 2
    with pytest.raises(ConflictError, match="already exists"):
        await classes.create(TRAINER, name="fits", count=1)


async def test_the_trainer_is_reminded_once_before_the_class_expires(world: World) -> None:
    classes = world.rt.service.classes
    made = await classes.create(TRAINER, name="rem", count=2)
    for lab in made.labs:
        await world.update(lab.name, state=LabState.READY, expires_at=T0 + timedelta(minutes=20),
                           created_at=T0 - timedelta(hours=1))
    await expiry_sweep(world.ctx, now=T0)
    await expiry_sweep(world.ctx, now=T0 + timedelta(minutes=1))
    reminders = world.of(NoticeKind.CLASS_EXPIRING)
    assert len(reminders) == 1
    assert reminders[0].details == {"class": "rem", "trainer": "U_TRAINER"}
    assert "class rem: 2 labs expire" in reminders[0].text
    # Extending the class extends every lab and lets the next approach of expiry remind the trainer again.
    _, problems = await classes.extend(TRAINER, "rem", timedelta(hours=1))
    assert problems == []
    assert {lab.state for lab in (await classes.status("rem")).labs} == {LabState.READY}
