"""The lab lifecycle: the one writer of a lab's state.

Every change of a lab's ``state`` goes through ``Lifecycle``: the service (people's commands), the scheduler's
sweeps and the build all call it. One call does, in one transaction, what each of them used to write by hand:

* read the lab fresh and let the caller decide on that row (``decide`` returns a ``Change``, raises a domain
  error to refuse, or returns None when there is nothing to do any more, e.g. another replica got there first);
* check the state-machine edge (``services.labs.states``), set the fields, record the audit events;
* on a lost optimistic lock, read again and decide again (so a decision is always made on the row it writes);

then, after the commit, announce the notice and kick the engine. The rules of who may do what (owner or
admin, quotas, TTLs) stay in ``services.labs.service``; the sweeps keep when to act; the engine and the build
keep how.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from config.settings import Settings
from services.db import utcnow
from services.errors import StaleWriteError
from services.labs import repository as repo
from services.labs.models import Lab, LabState
from services.labs.notifier import Notice, NoticeKind, Notifier
from services.labs.views import LabView, lab_view

log = logging.getLogger(__name__)

SYSTEM = "labbot"  # the actor of everything labbot does on its own (builds, sweeps, resume)
WRITE_ATTEMPTS = 10  # optimistic-lock retries before a write gives up as StaleWriteError


def destroy_backoff(settings: Settings, attempts: int) -> timedelta:
    """How long after the ``attempts``-th failed destroy the next one starts: doubling, capped.

    The build's quick retries (attempts 1..4) and the expiry sweep's re-drives of a destroy that gave up
    (attempts 5..) are one series, so a destroy that keeps failing is tried ever less often, never forgotten.
    """
    seconds = settings.destroy_retry_base_seconds * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.destroy_retry_max_seconds))


# The engine, as the lifecycle sees it: ``kick(lab_id)`` makes sure some task works on the lab soon (idempotent).
Kick = Callable[[int], None]


@dataclass(frozen=True)
class Event:
    """One audit event to record with a change (besides the ``state:<to>`` event of a transition)."""

    kind: str
    detail: str = ""


@dataclass(frozen=True)
class Change:
    """What to do to one lab: an optional state edge, field values, audit events, a notice and a kick."""

    to: LabState | None = None
    fields: Mapping[str, object] = field(default_factory=dict)
    detail: str = ""  # the audit detail of the state change (default ``old → new``)
    events: tuple[Event, ...] = ()
    notice: NoticeKind | None = None
    text: str = ""  # the notice's text
    details: Mapping[str, object] = field(default_factory=dict)  # the notice's details
    kick: bool = False  # the lab has engine work now (building, destroying)
    retry_after: timedelta | None = None  # the engine's next attempt waits this long


Decide = Callable[[Lab], "Change | None"]


class Lifecycle:
    """Changes labs' states and fields with their audit events, then announces them and kicks the engine."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        notifier: Notifier,
        titles: Mapping[str, str] | None = None,
        kick: Kick | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.notifier = notifier
        self.titles = dict(titles or {})
        self.kick = kick
        self.clock = clock

    async def create(
        self,
        *,
        name: str,
        owner: str,
        profile: str,
        channel: str | None,
        expires_at: datetime,
        detail: str,
        before: Callable[[AsyncSession], Awaitable[None]] | None = None,
        fields: Mapping[str, object] | None = None,
    ) -> LabView:
        """Insert a lab in ``requested`` with its ``created`` event, announce it, and kick its build.

        ``before`` runs first in the same transaction (the service's quota check under its lock), so the rule
        and the insert are atomic. ``fields`` are set on the new row (an exercise lab's start).
        """
        async with self.sessions() as session, session.begin():
            if before is not None:
                await before(session)
            lab = await repo.create(session=session, name=name, owner=owner, profile=profile, channel=channel,
                                    expires_at=expires_at)
            for key, value in (fields or {}).items():
                setattr(lab, key, value)
            await repo.add_event(session=session, lab=lab, actor=owner, kind="created", detail=detail)
            view = lab_view(lab)
        await self._announce(Change(notice=NoticeKind.CREATED, kick=True), view, owner)
        return view

    async def apply(
        self, decide: Decide, *, actor: str, lab_id: int | None = None, name: str | None = None
    ) -> LabView | None:
        """Decide on the fresh lab (by id, or the live lab called ``name``) and apply the Change; None if none.

        ``decide`` may run more than once (each lost optimistic lock reads the lab again), so it must only
        look at the row it is given. Domain errors it raises reach the caller unchanged.
        """
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(StaleWriteError),
            stop=stop_after_attempt(WRITE_ATTEMPTS),
            wait=wait_random(0.01, 0.05),
            reraise=True,
        ):
            with attempt:
                result = await self._apply_once(decide, actor=actor, lab_id=lab_id, name=name)
        if result is None:
            return None
        change, view = result
        await self._announce(change, view, actor)
        return view

    async def note(self, lab_id: int, *, kind: str, detail: str, actor: str = SYSTEM) -> None:
        """An audit event on the lab that changes nothing else (e.g. ``baked``)."""
        async with self.sessions() as session, session.begin():
            lab = await repo.get(session=session, lab_id=lab_id)
            await repo.add_event(session=session, lab=lab, actor=actor, kind=kind, detail=detail)

    async def move(
        self,
        lab_id: int,
        to: LabState,
        *,
        notice: NoticeKind | None = None,
        actor: str = SYSTEM,
        detail: str = "",
        fields: Mapping[str, object] | None = None,
        retry_after: timedelta | None = None,
        only_from: frozenset[LabState] | None = None,
        kick: bool = False,
    ) -> LabView | None:
        """Move a lab to ``to`` with ``fields`` (no rule beyond the state machine), then announce ``notice``.

        With ``only_from``, a lab found in another state is left as it is and None is returned (a build that
        ends while a destroy was requested must not turn the lab ready or failed).
        """

        def decide(lab: Lab) -> Change | None:
            if only_from is not None and lab.state not in only_from:
                log.info("lab %s is %s, not %s; left as it is", lab.name, lab.state, to)
                return None
            return Change(to=to, fields=fields or {}, detail=detail, notice=notice, text=detail,
                          retry_after=retry_after, kick=kick)

        return await self.apply(decide, actor=actor, lab_id=lab_id)

    async def _apply_once(
        self, decide: Decide, *, actor: str, lab_id: int | None, name: str | None
    ) -> tuple[Change, LabView] | None:
        async with self.sessions() as session, session.begin():
            if lab_id is not None:
                lab = await repo.get(session=session, lab_id=lab_id)
            else:
                lab = await repo.get_live_by_name(session=session, name=name or "")
            change = decide(lab)
            if change is None:
                return None
            for key, value in change.fields.items():
                setattr(lab, key, value)
            if change.retry_after is not None:
                lab.next_attempt_at = self.clock() + change.retry_after
            if change.to is not None and lab.state != change.to:
                await repo.transition(session=session, lab=lab, target=change.to, actor=actor, detail=change.detail)
            for event in change.events:
                await repo.add_event(session=session, lab=lab, actor=actor, kind=event.kind, detail=event.detail)
            await repo.save(session=session)
            steps = await repo.list_steps(session=session, lab_id=lab.id)
            return change, lab_view(lab, steps, self.titles)

    async def _announce(self, change: Change, view: LabView, actor: str) -> None:
        if change.notice is not None:
            await self.notifier.notify(Notice(change.notice, view, actor=actor, text=change.text,
                                              details=dict(change.details)))
        if change.kick and self.kick is not None:
            self.kick(view.id)
