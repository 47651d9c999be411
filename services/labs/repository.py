"""Persistence of labs, steps, events and host keys: keyword-only functions over an AsyncSession.

Callers own the unit of work (``async with sessions() as session, session.begin():``). ``save`` turns a lost
optimistic lock into StaleWriteError and a taken live name into ConflictError, so no caller sees SQLAlchemy.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from services.db import utcnow
from services.errors import ConflictError, NotFoundError, StaleWriteError
from services.i18n import _
from services.labs.models import HealthCheck, HostKey, Lab, LabEvent, LabState, LabStep, StepState
from services.labs.states import LIVE_STATES, check_transition


async def save(*, session: AsyncSession) -> None:
    """Flush pending changes, translating lock and uniqueness failures into domain errors."""
    try:
        await session.flush()
    except StaleDataError:
        await session.rollback()
        raise StaleWriteError(_("the lab was changed by someone else at the same time; try again")) from None
    except IntegrityError as err:
        await session.rollback()
        if "name" in str(err.orig).lower():
            raise ConflictError(_("a live lab already has that name")) from None  # create() names it
        raise


async def create(
    *, session: AsyncSession, name: str, owner: str, profile: str, expires_at: datetime, channel: str | None
) -> Lab:
    """Insert a new lab in ``requested``; a live lab with the same name is a ConflictError."""
    lab = Lab(
        uuid=uuidlib.uuid4().hex,
        name=name,
        owner=owner,
        channel=channel,
        profile=profile,
        state=LabState.REQUESTED,
        expires_at=expires_at,
        warned_offsets=[],
        nested_ids={},
        summary={},
        health_failing=[],
    )
    session.add(lab)
    try:
        await save(session=session)
    except ConflictError:
        raise ConflictError(_("a live lab is already called `{name}`; pick another name (`/lab status "
                              "{name}` shows that one)").format(name=name)) from None
    return lab


async def get(*, session: AsyncSession, lab_id: int) -> Lab:
    """The lab with this id, or NotFoundError."""
    lab = await session.get(Lab, lab_id)
    if lab is None:
        raise NotFoundError(_("no lab with id {lab_id}").format(lab_id=lab_id))
    return lab


async def get_live_by_name(*, session: AsyncSession, name: str) -> Lab:
    """The live lab called ``name``, or NotFoundError."""
    lab = await session.scalar(select(Lab).where(Lab.name == name, Lab.state != LabState.DESTROYED))
    if lab is None:
        raise NotFoundError(_("there is no live lab called `{name}` (try `/lab list`)").format(name=name))
    return lab


async def get_latest_by_name(*, session: AsyncSession, name: str) -> Lab:
    """The live lab called ``name`` or else the most recently destroyed one (for logs and status)."""
    lab = await session.scalar(
        select(Lab).where(Lab.name == name).order_by((Lab.state == LabState.DESTROYED).asc(), Lab.id.desc())
    )
    if lab is None:
        raise NotFoundError(_("there is no lab called `{name}` (try `/lab list --all`)").format(name=name))
    return lab


async def list_(
    *, session: AsyncSession, owner: str | None = None, states: Sequence[str] | None = None, limit: int = 200
) -> list[Lab]:
    """Labs, newest first, optionally of one owner and in some states (default: live ones)."""
    wanted = list(states) if states is not None else [s.value for s in LIVE_STATES]
    query = select(Lab).where(Lab.state.in_(wanted)).order_by(Lab.id.desc()).limit(limit)
    if owner is not None:
        query = query.where(Lab.owner == owner)
    return list((await session.scalars(query)).all())


async def count_live(*, session: AsyncSession, owner: str | None = None) -> int:
    """How many live labs there are (of one owner, if given)."""
    query = select(func.count()).select_from(Lab).where(Lab.state != LabState.DESTROYED)
    if owner is not None:
        query = query.where(Lab.owner == owner)
    return int(await session.scalar(query) or 0)


async def transition(
    *, session: AsyncSession, lab: Lab, target: str, actor: str, detail: str = ""
) -> None:
    """Move the lab along one state-machine edge and record who did it.

    Only ``services.labs.lifecycle`` calls this: it is the one writer of lab state (a test checks).
    """
    old = lab.state
    lab.state = check_transition(lab.state, target, lab=_("lab `{name}`").format(name=lab.name))
    if lab.state == LabState.DESTROYED:
        lab.destroyed_at = utcnow()
    await add_event(session=session, lab=lab, actor=actor, kind=f"state:{target}", detail=detail or f"{old} → {target}")
    await save(session=session)


async def execute_alone(sessions: async_sessionmaker[AsyncSession], statement: Any) -> int:
    """Run one UPDATE on its own connection in autocommit (one round trip: no BEGIN, no COMMIT); its row count.

    For writes that are a single conditional statement, whose condition is the whole transaction.
    """
    async with sessions.kw["bind"].connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        result = await conn.execute(statement.execution_options(synchronize_session=False))
        return int(result.rowcount)  # type: ignore[attr-defined]


async def update_lab(sessions: async_sessionmaker[AsyncSession], *, lab_id: int, version: int,
                     values: dict[str, Any]) -> bool:
    """Write ``values`` to the lab if its version is still ``version`` (an optimistic lock); False if not."""
    if "state" in values:
        raise ValueError("a lab's state changes only through services.labs.lifecycle")
    statement = update(Lab).where(Lab.id == lab_id, Lab.version == version).values(
        **values, version=version + 1, updated_at=utcnow())
    try:
        return await execute_alone(sessions, statement) == 1
    except IntegrityError as err:
        raise ConflictError(_("the lab could not be updated: {orig}").format(orig=err.orig)) from None


async def start_step(sessions: async_sessionmaker[AsyncSession], *, lab_id: int, name: str, at: datetime) -> bool:
    """Mark a step running (one more attempt) unless its lab is being destroyed; False if it is."""
    destroying = select(Lab.state).where(Lab.id == lab_id).scalar_subquery() == LabState.DESTROYING.value
    statement = update(LabStep).where(LabStep.lab_id == lab_id, LabStep.name == name, ~destroying).values(
        state=StepState.RUNNING, attempt=LabStep.attempt + 1, started_at=at, finished_at=None, error=None,
        progress=None)
    return await execute_alone(sessions, statement) == 1


async def update_step(sessions: async_sessionmaker[AsyncSession], *, lab_id: int, name: str,
                      values: dict[str, Any]) -> None:
    """Write fields of one step (its state, output tail, progress): only the build holding the lease does."""
    await execute_alone(sessions, update(LabStep).where(LabStep.lab_id == lab_id, LabStep.name == name)
                        .values(**values))


async def set_progress_ref(*, session: AsyncSession, lab_id: int, ref: str) -> None:
    """Write only the front end's progress reference, without a version bump.

    The column is the front end's alone and the engine never reads it to decide anything, so it takes no part in
    optimistic locking: a card posted while a step is being recorded must not make the engine's write stale.
    """
    result = await session.execute(
        update(Lab).where(Lab.id == lab_id).values(progress_ref=ref).execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFoundError(_("no lab with id {lab_id}").format(lab_id=lab_id))


async def add_event(*, session: AsyncSession, lab: Lab | None, actor: str, kind: str, detail: str = "") -> None:
    """Append one audit event."""
    session.add(LabEvent(lab_id=lab.id if lab else None, actor=actor, kind=kind, detail=detail[:4000]))


async def list_events(*, session: AsyncSession, lab_id: int, limit: int = 50) -> list[LabEvent]:
    """The lab's audit trail, oldest first (the last ``limit`` entries)."""
    rows = await session.scalars(
        select(LabEvent).where(LabEvent.lab_id == lab_id).order_by(LabEvent.id.desc()).limit(limit)
    )
    return list(reversed(rows.all()))


# --- steps -------------------------------------------------------------------------------------------


async def list_steps(*, session: AsyncSession, lab_id: int) -> list[LabStep]:
    """The lab's steps in creation order."""
    rows = await session.scalars(select(LabStep).where(LabStep.lab_id == lab_id).order_by(LabStep.id))
    return list(rows.all())


async def ensure_steps(*, session: AsyncSession, lab_id: int, names: Sequence[str]) -> list[LabStep]:
    """Create the pending steps that do not exist yet; return all steps of the lab in order."""
    existing = {s.name for s in await list_steps(session=session, lab_id=lab_id)}
    for name in names:
        if name not in existing:
            session.add(LabStep(lab_id=lab_id, name=name, state=StepState.PENDING, attempt=0))
    await session.flush()
    return await list_steps(session=session, lab_id=lab_id)


async def get_step(*, session: AsyncSession, lab_id: int, name: str) -> LabStep:
    """One step of a lab, or NotFoundError."""
    step = await session.scalar(select(LabStep).where(LabStep.lab_id == lab_id, LabStep.name == name))
    if step is None:
        raise NotFoundError(_("the lab has no step called `{name}`").format(name=name))
    return step


# --- leases: which process works on which lab ----------------------------------------------------------


async def claim(*, session: AsyncSession, lab_id: int, owner: str, seconds: int) -> bool:
    """Take (or renew) the work lease on a lab; False when another live process holds it.

    One conditional UPDATE, so two processes racing for the same lab cannot both win on either database.
    """
    now = utcnow()
    result = await session.execute(
        update(Lab)
        .where(
            Lab.id == lab_id,
            or_(Lab.lease_owner.is_(None), Lab.lease_owner == owner, Lab.lease_expires_at < now),
        )
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(*, session: AsyncSession, lab_id: int, owner: str) -> None:
    """Give the lease back (only if we still hold it)."""
    await session.execute(
        update(Lab)
        .where(Lab.id == lab_id, Lab.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


async def claimable_ids(*, session: AsyncSession, states: Sequence[str], owner: str, limit: int = 50) -> list[int]:
    """Labs in ``states`` whose lease is free, expired or ours (PostgreSQL skips rows others lock)."""
    now = utcnow()
    query = (
        select(Lab.id)
        .where(
            Lab.state.in_(list(states)),
            or_(Lab.lease_owner.is_(None), Lab.lease_owner == owner, Lab.lease_expires_at < now),
            or_(Lab.next_attempt_at.is_(None), Lab.next_attempt_at <= now),
        )
        .order_by(Lab.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.scalars(query)).all())


# --- pinned SSH host keys ------------------------------------------------------------------------------


class DatabaseHostKeyStore:
    """services.ssh.hostkeys.HostKeyStore on the host_keys table (trust on first use, then pinned)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, lab: str, host: str) -> str | None:
        """The pinned key of ``host`` in lab ``lab`` (the lab's uuid), if any."""
        async with self._sessions() as session:
            return await session.scalar(select(HostKey.key).where(HostKey.lab_uuid == lab, HostKey.host == host))

    async def pin(self, lab: str, host: str, key: str) -> str:
        """Pin a key seen for the first time, in one statement; the key pinned now (a concurrent first connection's,
        if it pinned first: the caller compares)."""
        dialect = self._sessions.kw["bind"].dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(HostKey).values(lab_uuid=lab, host=host, key=key, pinned_at=utcnow())
        statement = statement.on_conflict_do_nothing(index_elements=[HostKey.lab_uuid, HostKey.host])
        for _attempt in range(3):
            if await execute_alone(self._sessions, statement):
                return key
            pinned = await self.get(lab, host)
            if pinned is not None:
                return pinned
            # forgotten between the insert and the read: pin again
        raise RuntimeError(f"the host key of {host} in lab {lab} keeps being pinned and forgotten")

    async def forget(self, lab: str, host: str | None = None) -> None:
        """Drop every pinned key of a lab (on destroy), or one host's (its VM was recreated)."""
        query = delete(HostKey).where(HostKey.lab_uuid == lab)
        if host is not None:
            query = query.where(HostKey.host == host)
        async with self._sessions() as session, session.begin():
            await session.execute(query)


# --- health --------------------------------------------------------------------------------------------


async def add_health_checks(*, session: AsyncSession, lab_id: int, results: Sequence[HealthCheck]) -> None:
    """Store the results of one health run."""
    for result in results:
        result.lab_id = lab_id
        session.add(result)
    await session.flush()


async def prune_health_checks(*, session: AsyncSession, before: datetime) -> int:
    """Delete health rows older than ``before``; how many went."""
    result = await session.execute(delete(HealthCheck).where(HealthCheck.at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- scheduler sweeps (services.scheduler) -------------------------------------------------------------

# States in which a lab's expiry is acted on: everything live except a destroy already under way.
EXPIRABLE_STATES = (LabState.REQUESTED, LabState.PROVISIONING, LabState.READY, LabState.EXPIRING, LabState.FAILED)


async def due_for_expiry(*, session: AsyncSession, horizon: datetime) -> list[Lab]:
    """Labs that expire at or before ``horizon`` and may still be warned or expired, soonest first.

    A lab whose destroy gave up (``failed`` at step ``destroy``) is not here: it is re-driven, not expired.
    """
    query = (
        select(Lab)
        .where(
            Lab.state.in_([s.value for s in EXPIRABLE_STATES]),
            Lab.expires_at <= horizon,
            # Spelled out so a NULL failed_step counts as "not a failed destroy" (SQL's NOT would drop it).
            or_(Lab.state != LabState.FAILED, Lab.failed_step.is_(None), Lab.failed_step != "destroy"),
        )
        .order_by(Lab.expires_at, Lab.id)
    )
    return list((await session.scalars(query)).all())


async def failed_destroys(*, session: AsyncSession) -> list[tuple[Lab, datetime | None]]:
    """Labs whose destroy gave up, each with when it last became ``failed`` (from the audit trail)."""
    failed_at = (
        select(LabEvent.lab_id, func.max(LabEvent.at).label("at"))
        .where(LabEvent.kind == f"state:{LabState.FAILED.value}")
        .group_by(LabEvent.lab_id)
        .subquery()
    )
    rows = await session.execute(
        select(Lab, failed_at.c.at)
        .outerjoin(failed_at, failed_at.c.lab_id == Lab.id)
        .where(Lab.state == LabState.FAILED, Lab.failed_step == "destroy")
        .order_by(Lab.id)
    )
    return [(lab, at) for lab, at in rows.tuples().all()]


async def latest_events(*, session: AsyncSession, lab_ids: Sequence[int], kinds: Sequence[str]) -> dict[int, LabEvent]:
    """The newest event of any of ``kinds`` for each of ``lab_ids`` that has one (one query)."""
    if not lab_ids:
        return {}
    newest = (
        select(func.max(LabEvent.id))
        .where(LabEvent.lab_id.in_(list(lab_ids)), LabEvent.kind.in_(list(kinds)))
        .group_by(LabEvent.lab_id)
    )
    rows = await session.scalars(select(LabEvent).where(LabEvent.id.in_(newest)))
    return {event.lab_id: event for event in rows.all() if event.lab_id is not None}


async def last_event_at(*, session: AsyncSession, kind: str) -> datetime | None:
    """When the newest event of ``kind`` was recorded, if ever (labbot-wide events such as sweep reports)."""
    return await session.scalar(select(func.max(LabEvent.at)).where(LabEvent.kind == kind))


async def labs_by_uuid(*, session: AsyncSession, uuids: Sequence[str]) -> dict[str, Lab]:
    """The labs (live or destroyed) with these uuids, by uuid; unknown uuids are simply absent."""
    if not uuids:
        return {}
    rows = await session.scalars(select(Lab).where(Lab.uuid.in_(sorted(set(uuids)))))
    return {lab.uuid: lab for lab in rows.all()}


async def live_resource_owners(*, session: AsyncSession) -> dict[str, str]:
    """Outer resource uuid (VM1, VM2, data volume) → name of the live lab that holds it."""
    rows = await session.execute(
        select(Lab.name, Lab.vm1_uuid, Lab.vm2_uuid, Lab.volume_uuid).where(Lab.state != LabState.DESTROYED)
    )
    owners: dict[str, str] = {}
    for name, *resources in rows.tuples().all():
        owners.update({uuid: name for uuid in resources if uuid})
    return owners


async def first_seen(*, session: AsyncSession, kind: str, keys: Sequence[str]) -> dict[str, datetime]:
    """For events of ``kind`` whose detail starts with ``<key> ``: the earliest time each key was recorded."""
    if not keys:
        return {}
    width = {len(key) for key in keys}
    if len(width) != 1:
        raise ValueError("first_seen keys must all have the same length")
    prefix = func.substr(LabEvent.detail, 1, width.pop())
    rows = await session.execute(
        select(prefix, func.min(LabEvent.at)).where(LabEvent.kind == kind, prefix.in_(list(keys))).group_by(prefix)
    )
    return {key: at for key, at in rows.tuples().all()}


async def add_event_at(
    *, session: AsyncSession, lab_id: int | None, actor: str, kind: str, detail: str, at: datetime
) -> LabEvent:
    """Append one audit event stamped ``at`` (a sweep's clock), not the wall clock."""
    event = LabEvent(lab_id=lab_id, actor=actor, kind=kind, detail=detail[:4000], at=at)
    session.add(event)
    await session.flush()
    return event
