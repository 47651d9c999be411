"""Classes: a trainer's labs for a whole class, made, watched, extended and ended with one command each.

A class ``c1`` of N labs has labs ``c1-01`` … ``c1-NN``, each owned by a named student, or by the trainer and
``claimable`` until a student takes it with ``/lab class claim c1``. The labs are ordinary labs (same engine,
leases, resume, expiry, exercise checks); the class adds the names, the ownership hand-over, a class-wide quota
and one overview. Trainers are labbot's admins. A student's own quota does not count class labs: the trainer
decides who gets one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.profiles import LabProfile
from config.settings import Settings
from services import claims
from services.errors import ConflictError, NotFoundError, PermissionDeniedError, QuotaError
from services.i18n import _
from services.labs import repository as repo
from services.labs.models import Lab, LabClass, LabState
from services.labs.notifier import Notice, NoticeKind, Notifier
from services.labs.states import LIVE_STATES
from services.labs.views import LabView, lab_view

log = logging.getLogger(__name__)


class Person(Protocol):
    """Who asks (``services.labs.service.Actor``)."""

    @property
    def user_id(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...


class LabRules(Protocol):
    """The lab service as classes use it (``services.labs.service.LabService``): its rules, its writes."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    notifier: Notifier
    capacity_check: Any

    def clock(self) -> datetime: ...

    def recipe(self, profile: str | None, ttl: timedelta | None) -> tuple[str, LabProfile, timedelta]: ...

    def exercise_start(self, recipe: LabProfile, start: str | None) -> str: ...

    def kick(self, lab_id: int) -> None: ...

    async def extend(self, actor: Any, name: str, duration: timedelta | None = None) -> LabView: ...

    async def destroy(self, actor: Any, name: str) -> LabView: ...


@dataclass(frozen=True)
class ClassView:
    """A class and its labs as a trainer sees them."""

    name: str
    trainer: str
    profile: str
    exercise_start: str | None
    size: int
    created_at: datetime
    destroyed_at: datetime | None
    status_ref: str | None
    labs: tuple[LabView, ...]

    @property
    def live_labs(self) -> tuple[LabView, ...]:
        return tuple(lab for lab in self.labs if lab.state != LabState.DESTROYED)

    @property
    def claimable(self) -> int:
        return sum(lab.claimable for lab in self.live_labs)

    @property
    def first_expiry(self) -> datetime | None:
        return min((lab.expires_at for lab in self.live_labs), default=None)


def lab_names(name: str, count: int) -> list[str]:
    """The labs of class ``name``: ``name-01`` … (two digits: classes hold at most 99 labs)."""
    return [f"{name}-{i:02d}" for i in range(1, count + 1)]


class ClassService:
    """Class operations, on top of the lab service's rules (profiles, TTLs, owner-or-admin, quotas)."""

    def __init__(self, labs: LabRules) -> None:
        self.labs = labs

    async def create(self, actor: Person, *, name: str, count: int, students: tuple[str, ...] = (),
                     exercise: bool = False, start: str | None = None, ttl: timedelta | None = None,
                     profile: str | None = None, channel: str | None = None) -> ClassView:
        """Register a class and its labs in one transaction (all or none), then start building them."""
        if not actor.is_admin:
            raise PermissionDeniedError(_("only trainers (labbot's admins) can create a class"))
        settings = self.labs.settings
        if count > settings.max_labs_per_class:
            raise QuotaError(
                _(
                    "a class may have at most {max_labs_per_class} labs (LABBOT_MAX_LABS_PER_CLASS); asked for {count}"
                ).format(max_labs_per_class=settings.max_labs_per_class, count=count)
            )
        profile_name, recipe, lifetime = self.labs.recipe(profile, ttl)
        exercise_start = self.labs.exercise_start(recipe, start) if exercise else None
        if self.labs.capacity_check is not None:
            await self.labs.capacity_check(recipe)
        names = lab_names(name, count)
        async with self.labs.sessions() as session, session.begin():
            await claims.serialize_lab_creates(session=session)  # the global quota holds against concurrent creates
            if await self._live_class(session, name) is not None:
                raise ConflictError(
                    _("a class called `{name}` already exists (`/lab class status {name}`)").format(name=name)
                )
            taken = (
                await session.scalars(select(Lab.name).where(Lab.name.in_(names), Lab.state != LabState.DESTROYED))
            ).all()
            if taken:
                raise ConflictError(
                    _("live labs already have the names {join}; pick another class name").format(
                        join=", ".join(sorted(taken))
                    )
                )
            live = await repo.count_live(session=session)
            if live + count > settings.max_labs_total:
                raise QuotaError(
                    _(
                        "labbot runs {live} labs and allows {max_labs_total} in all "
                        "(LABBOT_MAX_LABS_TOTAL): no room for {count} more"
                    ).format(live=live, max_labs_total=settings.max_labs_total, count=count)
                )
            row = LabClass(
                name=name,
                trainer=actor.user_id,
                profile=profile_name,
                channel=channel,
                exercise_start=exercise_start,
                size=count,
                warned_offsets=[],
            )
            session.add(row)
            await session.flush()
            expires = self.labs.clock() + lifetime
            created = []
            for index, lab_name in enumerate(names):
                student = students[index] if index < len(students) else None
                lab = await repo.create(
                    session=session,
                    name=lab_name,
                    owner=student or actor.user_id,
                    profile=profile_name,
                    channel=channel,
                    expires_at=expires,
                )
                lab.class_id, lab.claimable, lab.exercise_start = row.id, student is None, exercise_start
                whom = (
                    _("for <@{student}>").format(student=student)
                    if student
                    else _("unassigned (`/lab class claim` gives it to a student)")
                )
                await repo.add_event(
                    session=session,
                    lab=lab,
                    actor=actor.user_id,
                    kind="created",
                    detail=_("class {name}, {whom}, profile {profile_name}").format(
                        name=name, whom=whom, profile_name=profile_name
                    ),
                )
                created.append(lab)
            await session.flush()
            views = [lab_view(lab) for lab in created]
            view = self._view(row, views)
        for lab in views:
            await self.labs.notifier.notify(Notice(NoticeKind.CREATED, lab, actor=actor.user_id))
            self.labs.kick(lab.id)
        log.info("class %s: %d labs by %s", name, count, actor.user_id)
        return view

    async def status(self, name: str) -> ClassView:
        """The class (live, else the latest ended one) with every one of its labs."""
        async with self.labs.sessions() as session:
            row = await self._live_class(session, name) or await self._latest_class(session, name)
            if row is None:
                raise NotFoundError(_("there is no class called `{name}`").format(name=name))
            labs = (await session.scalars(select(Lab).where(Lab.class_id == row.id).order_by(Lab.name))).all()
            return self._view(row, [lab_view(lab) for lab in labs])

    async def claim(self, actor: Person, name: str) -> LabView:
        """Give the student one unassigned lab of the class; atomic, so two students never get the same lab."""
        async with self.labs.sessions() as session, session.begin():
            row = await self._live_class(session, name)
            if row is None:
                raise NotFoundError(_("there is no class called `{name}`").format(name=name))
            mine = await session.scalar(
                select(Lab.name).where(
                    Lab.class_id == row.id,
                    Lab.owner == actor.user_id,
                    Lab.claimable.is_(False),
                    Lab.state.in_([s.value for s in LIVE_STATES]),
                )
            )
            if mine is not None:
                raise ConflictError(_("you already have lab `{mine}` in class `{name}`").format(mine=mine, name=name))
            candidates = (
                await session.scalars(
                    select(Lab.id)
                    .where(
                        Lab.class_id == row.id, Lab.claimable.is_(True), Lab.state.in_([s.value for s in LIVE_STATES])
                    )
                    .order_by(Lab.name)
                )
            ).all()
            for lab_id in candidates:
                # A conditional update: of two students racing for one lab (in any replica), one row count is 0.
                taken = await session.execute(
                    update(Lab)
                    .where(Lab.id == lab_id, Lab.claimable.is_(True))
                    .values(owner=actor.user_id, claimable=False, version=Lab.version + 1)
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    lab = await repo.get(session=session, lab_id=lab_id)
                    await session.refresh(lab)
                    await repo.add_event(
                        session=session,
                        lab=lab,
                        actor=actor.user_id,
                        kind="claimed",
                        detail=_("class {name}: claimed by <@{user_id}>").format(name=name, user_id=actor.user_id),
                    )
                    view = lab_view(lab)
                    break
            else:
                raise ConflictError(
                    _(
                        "every lab of class `{name}` has a student already; ask the trainer (<@{trainer}>) for one more"
                    ).format(name=name, trainer=row.trainer)
                )
        await self.labs.notifier.notify(Notice(NoticeKind.CLAIMED, view, actor=actor.user_id))
        return view

    async def extend(self, actor: Person, name: str, duration: timedelta) -> tuple[ClassView, list[str]]:
        """Extend every live lab of the class (trainer); returns the class and what could not be extended."""
        cls = await self._trainer_class(actor, name, "extend")
        problems = []
        for lab in cls.live_labs:
            if lab.state == LabState.DESTROYING:
                continue
            try:
                await self.labs.extend(actor, lab.name, duration)
            except (ConflictError, QuotaError) as err:
                problems.append(f"{lab.name}: {err.user_message}")
        async with self.labs.sessions() as session, session.begin():
            row = await self._live_class(session, name)
            if row is not None:
                row.warned_offsets = []
        return await self.status(name), problems

    async def destroy(self, actor: Person, name: str) -> ClassView:
        """End the class: destroy every live lab of it (trainer); the class name is free again."""
        cls = await self._trainer_class(actor, name, "destroy")
        for lab in cls.live_labs:
            if lab.state != LabState.DESTROYING:
                await self.labs.destroy(actor, lab.name)
        async with self.labs.sessions() as session, session.begin():
            row = await self._live_class(session, name)
            if row is not None:
                row.destroyed_at = self.labs.clock()
        return await self.status(name)

    async def set_status_ref(self, name: str, ref: str) -> None:
        """Remember where a front end shows the class's overview (e.g. a Slack message), to refresh it there."""
        async with self.labs.sessions() as session, session.begin():
            row = await self._live_class(session, name)
            if row is not None:
                row.status_ref = ref

    async def of_lab(self, lab: LabView) -> ClassView | None:
        """The class a lab belongs to, if any."""
        if lab.class_id is None:
            return None
        async with self.labs.sessions() as session:
            row = await session.get(LabClass, lab.class_id)
            if row is None:
                return None
            labs = (await session.scalars(select(Lab).where(Lab.class_id == row.id).order_by(Lab.name))).all()
            return self._view(row, [lab_view(x) for x in labs])

    async def expiring(self, within: timedelta) -> list[ClassView]:
        """Live classes whose first live lab expires within ``within`` (for the trainer's reminder)."""
        horizon = self.labs.clock() + within
        async with self.labs.sessions() as session:
            ids = (
                await session.scalars(
                    select(Lab.class_id)
                    .where(
                        Lab.class_id.is_not(None),
                        Lab.state.in_([LabState.READY, LabState.EXPIRING]),
                        Lab.expires_at <= horizon,
                    )
                    .group_by(Lab.class_id)
                    .having(func.count() > 0)
                )
            ).all()
        views = []
        for class_id in ids:
            async with self.labs.sessions() as session:
                row = await session.get(LabClass, class_id)
                if row is None or row.destroyed_at is not None:
                    continue
                labs = (await session.scalars(select(Lab).where(Lab.class_id == row.id).order_by(Lab.name))).all()
                views.append(self._view(row, [lab_view(x) for x in labs]))
        return views

    async def mark_warned(self, name: str, offset: str) -> bool:
        """Record that the trainer was reminded at ``offset``; False if that reminder already went out."""
        async with self.labs.sessions() as session, session.begin():
            row = await self._live_class(session, name)
            if row is None or offset in (row.warned_offsets or []):
                return False
            row.warned_offsets = [*(row.warned_offsets or []), offset]
            return True

    # --- helpers -------------------------------------------------------------------------------------

    async def _trainer_class(self, actor: Person, name: str, verb: str) -> ClassView:
        cls = await self.status(name)
        if cls.destroyed_at is not None:
            raise ConflictError(_("class `{name}` has ended").format(name=name))
        if not (actor.is_admin or actor.user_id == cls.trainer):
            raise PermissionDeniedError(
                _("only the trainer (<@{trainer}>) or an admin can {verb} class `{name}`").format(
                    trainer=cls.trainer, verb=verb, name=name
                )
            )
        return cls

    @staticmethod
    async def _live_class(session: AsyncSession, name: str) -> LabClass | None:
        return await session.scalar(select(LabClass).where(LabClass.name == name, LabClass.destroyed_at.is_(None)))

    @staticmethod
    async def _latest_class(session: AsyncSession, name: str) -> LabClass | None:
        return await session.scalar(select(LabClass).where(LabClass.name == name).order_by(LabClass.id.desc()).limit(1))

    @staticmethod
    def _view(row: LabClass, labs: list[LabView]) -> ClassView:
        return ClassView(
            name=row.name,
            trainer=row.trainer,
            profile=row.profile,
            exercise_start=row.exercise_start,
            size=row.size,
            created_at=row.created_at,
            destroyed_at=row.destroyed_at,
            status_ref=row.status_ref,
            labs=tuple(labs),
        )


@dataclass(frozen=True)
class ClassReminder:
    """A class whose first lab expires within one of the warning offsets, and the offsets not yet told."""

    class_id: int
    name: str
    trainer: str
    offsets: tuple[str, ...]
    first_lab: LabView
    live: int


async def due_reminders(
    session: AsyncSession, offsets: list[tuple[str, timedelta]], now: datetime
) -> list[ClassReminder]:
    """The classes whose trainer is due a reminder that their labs expire (the expiry sweep's part for classes)."""
    if not offsets:
        return []
    horizon = now + offsets[0][1]
    labs = (
        await session.scalars(
            select(Lab)
            .where(
                Lab.class_id.is_not(None),
                Lab.state.in_([LabState.READY, LabState.EXPIRING, LabState.PROVISIONING]),
                Lab.expires_at <= horizon,
            )
            .order_by(Lab.expires_at)
        )
    ).all()
    first: dict[int, Lab] = {}
    counts: dict[int, int] = {}
    for lab in labs:
        assert lab.class_id is not None
        first.setdefault(lab.class_id, lab)
        counts[lab.class_id] = counts.get(lab.class_id, 0) + 1
    due = []
    for class_id, lab in first.items():
        row = await session.get(LabClass, class_id)
        if row is None or row.destroyed_at is not None:
            continue
        told = set(row.warned_offsets or ())
        texts = tuple(text for text, delta in offsets if lab.expires_at - delta <= now and text not in told)
        if texts:
            due.append(ClassReminder(class_id, row.name, row.trainer, texts, lab_view(lab), counts[class_id]))
    return due


async def mark_reminded(session: AsyncSession, reminder: ClassReminder) -> bool:
    """Record the reminder's offsets as told; False if another sweep told them first."""
    row = await session.get(LabClass, reminder.class_id, with_for_update=True)
    if row is None or set(reminder.offsets) <= set(row.warned_offsets or ()):
        return False
    row.warned_offsets = sorted({*(row.warned_offsets or ()), *reminder.offsets})
    return True
