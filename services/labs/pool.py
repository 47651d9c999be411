"""The warm pool: labs built before anyone asks, so `/lab create` hands one out in seconds.

A profile with ``pool: {size: N}`` has N labs kept built and unclaimed (owner ``labbot-pool``, named
``pool-xxxxx``), refilled by the scheduler's leader within the global quota and the engine's concurrency bound.
An unclaimed pool lab never expires on the normal TTL: it is destroyed and replaced when the profile changes
(its digest differs), its health fails, its build failed, or it has waited the pool's ``ttl``.

`/lab create` claims a ready one atomically (a conditional update: two creates, in any replica, never get the
same lab), then hands it over before anyone sees it: fresh root passwords on VM1 and VM2 (and where the nested
ZStack keeps VM2's login) and the platform's VM and volume names after the new lab name. Only then does the lab
take the asker's name, channel and TTL. A hand-over that fails destroys that pool lab and the create builds a lab
the normal way.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.profiles import LabProfile
from config.settings import Settings
from services import claims
from services.errors import ConflictError, LabbotError
from services.i18n import _
from services.labs import repository as repo
from services.labs.models import Health, Lab, LabState
from services.labs.notifier import Notifier
from services.labs.states import LIVE_STATES
from services.labs.views import LabView, lab_view

log = logging.getLogger(__name__)

POOL_OWNER = "labbot-pool"
BUILDING = (LabState.REQUESTED, LabState.PROVISIONING)
# Far enough that the expiry sweep never sees an unclaimed pool lab; the pool's own ``ttl`` recycles it.
UNCLAIMED_EXPIRY = timedelta(days=3650)


def profile_digest(profile: LabProfile) -> str:
    """A short digest of what a profile builds (all but its pool settings): a pool lab built from another version
    is rebuilt, while resizing the pool keeps the labs it has."""
    return hashlib.sha256(profile.model_dump_json(exclude={"pool"}).encode()).hexdigest()[:16]


class PoolRules(Protocol):
    """The lab service as the pool uses it (``services.labs.service.LabService``)."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    profiles: dict[str, LabProfile]
    notifier: Notifier

    def clock(self) -> datetime: ...

    def kick(self, lab_id: int) -> None: ...


@dataclass(frozen=True)
class PoolStatus:
    """One profile's pool: how many labs it should keep, and where they are."""

    profile: str
    target: int
    ready: int
    building: int
    failed: int


@dataclass
class PoolSummary:
    """What one refill did, by lab name."""

    dry_run: bool = False
    created: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    short: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return True

    @property
    def acted(self) -> bool:
        return bool(self.created or self.retired or self.short)

    def lines(self) -> list[str]:
        lines = [_("built for the pool: {join}").format(join=', '.join(self.created)) if self.created else "",
                 _("retired from the pool: {join}").format(join=', '.join(self.retired)) if self.retired else "",
                 *self.short]
        return [line for line in lines if line] or [_("pool: nothing to do")]


class PoolService:
    """Keeps each profile's pool full and hands its labs out."""

    def __init__(self, labs: PoolRules, *, hand_over: Callable[[int, str], Awaitable[None]] | None = None,
                 destroy: Callable[[str], Awaitable[Any]] | None = None) -> None:
        self.labs = labs
        self.hand_over = hand_over
        self.destroy = destroy  # labbot destroying a pool lab by name (the lab service's destroy as the system)

    def pooled_profiles(self) -> dict[str, LabProfile]:
        """The profiles that ask for a pool."""
        return {name: p for name, p in self.labs.profiles.items() if p.pool.size > 0}

    async def status(self) -> list[PoolStatus]:
        """Per pooled profile: target size, ready, building and failed unclaimed labs."""
        async with self.labs.sessions() as session:
            rows = await self._pool_labs(session)
        found = []
        for name, profile in sorted(self.pooled_profiles().items()):
            mine = [lab for lab in rows if lab.profile == name]
            found.append(PoolStatus(
                profile=name, target=profile.pool.size,
                ready=sum(lab.state == LabState.READY for lab in mine),
                building=sum(lab.state in BUILDING for lab in mine),
                failed=sum(lab.state == LabState.FAILED for lab in mine)))
        return found

    async def refill(self, *, dry_run: bool = False) -> PoolSummary:
        """Retire stale, unhealthy, failed and over-age pool labs, then build what each pool lacks."""
        summary = PoolSummary(dry_run=dry_run)
        now = self.labs.clock()
        async with self.labs.sessions() as session:
            rows = await self._pool_labs(session)
        for name, profile in self.pooled_profiles().items():
            digest = profile_digest(profile)
            keep = 0
            for lab in (lab for lab in rows if lab.profile == name):
                why = _retire_reason(lab, digest, now, profile.pool.max_wait)
                if why is None:
                    keep += lab.state != LabState.DESTROYING
                    continue
                if lab.state == LabState.DESTROYING:
                    continue
                summary.retired.append(f"{lab.name} ({why})")
                if not dry_run and self.destroy is not None:
                    await self.destroy(lab.name)
            missing = profile.pool.size - keep
            if missing > 0 and not dry_run:
                made = await self._build(name, digest, missing)
                summary.created += made
                if len(made) < missing:
                    summary.short.append(_("pool {name}: {short} short (the global quota is full)").format(
                        name=name, short=missing - len(made)))
            elif missing > 0:
                summary.created += [_("({missing} for {name})").format(missing=missing, name=name)]
        if summary.acted and not dry_run:
            log.info("pool refill: %s", "; ".join(summary.lines()))
        return summary

    async def claim(
        self,
        actor_id: str,
        *,
        profile: str,
        name: str,
        channel: str | None,
        lifetime: timedelta,
        check_quota: Callable[[AsyncSession], Awaitable[None]],
    ) -> LabView | None:
        """Hand a ready pool lab of ``profile`` to ``actor_id`` as lab ``name``; None when the pool has none."""
        recipe = self.labs.profiles[profile]
        if recipe.pool.size <= 0:
            return None
        digest = profile_digest(recipe)
        async with self.labs.sessions() as session, session.begin():
            await claims.serialize_lab_creates(session=session)
            await check_quota(session)
            if await session.scalar(select(Lab.id).where(Lab.name == name, Lab.state != LabState.DESTROYED)):
                raise ConflictError(_("a live lab is already called `{name}`").format(name=name))
            candidates = (
                await session.scalars(
                    select(Lab.id)
                    .where(
                        Lab.pool.is_(True),
                        Lab.profile == profile,
                        Lab.profile_digest == digest,
                        Lab.state == LabState.READY,
                        Lab.health != Health.DEGRADED,
                    )
                    .order_by(Lab.created_at)
                )
            ).all()
            lab_id = None
            for candidate in candidates:
                # Conditional: of two claims racing for one lab (in any replica), one updates no row.
                taken = await session.execute(
                    update(Lab)
                    .where(Lab.id == candidate, Lab.pool.is_(True), Lab.state == LabState.READY)
                    .values(pool=False, owner=actor_id, version=Lab.version + 1)
                    .execution_options(synchronize_session=False)
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    lab_id = candidate
                    break
        if lab_id is None:
            return None
        try:
            if self.hand_over is not None:
                await self.hand_over(lab_id, name)
        except Exception as err:
            reason = err.user_message if isinstance(err, LabbotError) else type(err).__name__
            log.warning(
                "pool lab %s could not be handed over (%s); it is destroyed and a lab is built instead", lab_id, reason
            )
            async with self.labs.sessions() as session:
                pool_name = (await repo.get(session=session, lab_id=lab_id)).name
            if self.destroy is not None:
                await self.destroy(pool_name)
            return None
        async with self.labs.sessions() as session, session.begin():
            lab = await repo.get(session=session, lab_id=lab_id)
            was, now = lab.name, self.labs.clock()
            lab.name, lab.channel, lab.created_at, lab.expires_at = name, channel, now, now + lifetime
            lab.summary = {
                key: str(value).replace(f"`/lab access {was}`", f"`/lab access {name}`")
                for key, value in (lab.summary or {}).items()
            }
            await repo.add_event(
                session=session,
                lab=lab,
                actor=actor_id,
                kind="claimed",
                detail=_("from the warm pool ({was}); fresh credentials, platform names updated").format(was=was),
            )
            steps = await repo.list_steps(session=session, lab_id=lab_id)
            view = lab_view(lab, steps)
        return view

    async def _build(self, profile: str, digest: str, count: int) -> list[str]:
        made: list[Lab] = []
        async with self.labs.sessions() as session, session.begin():
            await claims.serialize_lab_creates(session=session)
            room = self.labs.settings.max_labs_total - await repo.count_live(session=session)
            for _slot in range(max(0, min(count, room))):
                lab = await repo.create(
                    session=session,
                    name=_pool_name(),
                    owner=POOL_OWNER,
                    profile=profile,
                    channel=None,
                    expires_at=self.labs.clock() + UNCLAIMED_EXPIRY,
                )
                lab.pool, lab.profile_digest = True, digest
                await repo.add_event(
                    session=session,
                    lab=lab,
                    actor=POOL_OWNER,
                    kind="created",
                    detail=_("warm pool of profile {profile}").format(profile=profile),
                )
                made.append(lab)
        for lab in made:
            self.labs.kick(lab.id)
        return [lab.name for lab in made]

    @staticmethod
    async def _pool_labs(session: AsyncSession) -> list[Lab]:
        return list(
            (
                await session.scalars(
                    select(Lab)
                    .where(Lab.pool.is_(True), Lab.state.in_([s.value for s in LIVE_STATES]))
                    .order_by(Lab.id)
                )
            ).all()
        )


def _retire_reason(lab: Lab, digest: str, now: datetime, max_wait: timedelta) -> str | None:
    if lab.profile_digest != digest:
        return _("the profile changed")
    if lab.state == LabState.FAILED:
        return _("its build failed at {failed_step}").format(failed_step=lab.failed_step)
    if lab.state in (LabState.READY, LabState.EXPIRING) and lab.health == Health.DEGRADED:
        return _("its health check failed")
    if lab.state == LabState.READY and lab.created_at + max_wait <= now:
        return _("it waited the pool's ttl")
    return None


def _pool_name() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "pool-" + "".join(secrets.choice(alphabet) for _ in range(6))
