"""The lab service: what users and admins can ask for, with the rules that guard it.

Front ends (Slack, console) call these methods with an ``Actor``; the service checks permissions, quotas and
states, writes the database, records an audit event, notifies, and hands remote work to the engine through
``kick`` (the engine builds and destroys labs in the background). Nothing here talks to Slack.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.profiles import LabProfile
from config.settings import Settings
from services import claims
from services.crypto import SecretBox
from services.db import utcnow
from services.errors import ConflictError, NotFoundError, PermissionDeniedError, QuotaError
from services.labs import repository as repo
from services.labs.access import AccessDetails
from services.labs.build.health import HealthReport
from services.labs.models import Lab, LabState, StepState
from services.labs.notifier import Notice, NoticeKind, Notifier
from services.labs.views import LabView, StepView, lab_view
from services.ssh.access import access_commands

log = logging.getLogger(__name__)

SYSTEM = "labbot"


@dataclass(frozen=True)
class Actor:
    """Who asks: a Slack user id (or the console user), and whether they are an admin."""

    user_id: str
    is_admin: bool = False

    @classmethod
    def system(cls) -> Actor:
        """labbot itself (the scheduler, resume on start-up)."""
        return cls(SYSTEM, is_admin=True)


class WorkKicker(Protocol):
    """The engine, as the service sees it: told that a lab has work to do."""

    def kick(self, lab_id: int) -> None:
        """Make sure some task works on this lab soon (idempotent)."""


class LabService:
    """Creates, lists, inspects, extends, retries and destroys labs on behalf of people."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        profiles: dict[str, LabProfile],
        notifier: Notifier,
        kicker: WorkKicker | None = None,
        step_titles: dict[str, str] | None = None,
        box: SecretBox | None = None,
        health_runner: Callable[[int], Awaitable[HealthReport]] | None = None,
        capacity_check: Callable[[LabProfile], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.profiles = profiles
        self.notifier = notifier
        self.kicker = kicker
        self.step_titles = step_titles or {}
        self.box = box
        self.health_runner = health_runner
        self.capacity_check = capacity_check
        self.clock = clock

    # --- reads ---------------------------------------------------------------------------------------

    async def view(self, lab_id: int) -> LabView:
        """A fresh snapshot of one lab with its steps."""
        async with self.sessions() as session:
            lab = await repo.get(session=session, lab_id=lab_id)
            return await self._view(session, lab)

    async def status(self, name: str) -> LabView:
        """The live lab called ``name`` (else the latest destroyed one), with its steps."""
        async with self.sessions() as session:
            lab = await repo.get_latest_by_name(session=session, name=name)
            return await self._view(session, lab)

    async def list_labs(self, actor: Actor, *, everything: bool = False) -> list[LabView]:
        """The actor's live labs; with ``everything``, every lab including destroyed ones."""
        async with self.sessions() as session:
            if everything:
                labs = await repo.list_(session=session, states=[s.value for s in LabState])
            else:
                labs = await repo.list_(session=session, owner=actor.user_id)
            return [lab_view(lab) for lab in labs]

    async def logs(self, name: str, step: str | None = None) -> list[StepView]:
        """The steps (or one step) of a lab with their output tails."""
        view = await self.status(name)
        if step is None:
            return [s for s in view.steps if s.state != StepState.PENDING]
        found = [s for s in view.steps if s.name == step]
        if not found:
            known = ", ".join(s.name for s in view.steps) or "none yet"
            raise NotFoundError(f"lab `{name}` has no step `{step}` (steps: {known})")
        return found

    async def events(self, name: str, limit: int = 50) -> list[tuple[datetime, str, str, str]]:
        """The audit trail of a lab: (when, who, what, detail)."""
        async with self.sessions() as session:
            lab = await repo.get_latest_by_name(session=session, name=name)
            events = await repo.list_events(session=session, lab_id=lab.id, limit=limit)
            return [(e.at, e.actor, e.kind, e.detail) for e in events]

    # --- writes --------------------------------------------------------------------------------------

    async def create(
        self,
        actor: Actor,
        *,
        name: str | None = None,
        profile: str | None = None,
        ttl: timedelta | None = None,
        channel: str | None = None,
    ) -> LabView:
        """Register a new lab and start building it; quota, TTL and name rules are checked first."""
        profile_name = profile or self.settings.default_profile
        recipe = self.profiles.get(profile_name)
        if recipe is None:
            raise NotFoundError(
                f"there is no lab profile `{profile_name}` (profiles: {', '.join(sorted(self.profiles))})"
            )
        lifetime = ttl or recipe.default_ttl
        if lifetime > recipe.max_ttl:
            raise QuotaError(
                f"a `{profile_name}` lab may live at most {_human(recipe.max_ttl)}; asked for {_human(lifetime)}"
            )
        async with self.sessions() as session:
            await self._check_quota(session, actor)
        if self.capacity_check is not None:
            # Asked before anything is written, so a full platform leaves no lab behind; the quota is checked
            # first because it costs no remote call.
            await self.capacity_check(recipe)
        async with self.sessions() as session, session.begin():
            await self._lock_quotas(session)
            await self._check_quota(session, actor)  # again, atomically: another create may have won meanwhile
            lab = await repo.create(
                session=session,
                name=name or _generated_name(),
                owner=actor.user_id,
                profile=profile_name,
                channel=channel,
                expires_at=self.clock() + lifetime,
            )
            await repo.add_event(
                session=session,
                lab=lab,
                actor=actor.user_id,
                kind="created",
                detail=f"profile {profile_name}, ttl {_human(lifetime)}",
            )
            view = lab_view(lab)
        await self.notifier.notify(Notice(NoticeKind.CREATED, view, actor=actor.user_id))
        self._kick(view.id)
        return view

    async def destroy(self, actor: Actor, name: str) -> LabView:
        """Ask for a lab to be torn down (owner or admin); a lab already being destroyed is left as is."""
        async with self.sessions() as session, session.begin():
            lab = await repo.get_live_by_name(session=session, name=name)
            self._authorize(actor, lab, "destroy")
            if lab.state == LabState.DESTROYING:
                raise ConflictError(f"lab `{name}` is already being destroyed")
            lab.destroy_requested_by = actor.user_id
            lab.next_attempt_at = None
            await repo.transition(
                session=session, lab=lab, target=LabState.DESTROYING, actor=actor.user_id, detail="destroy requested"
            )
            view = await self._view(session, lab)
        await self.notifier.notify(Notice(NoticeKind.DESTROYING, view, actor=actor.user_id))
        self._kick(view.id)
        return view

    async def extend(self, actor: Actor, name: str, duration: timedelta | None = None) -> LabView:
        """Push the expiry out (owner or admin), never past the profile's maximum lifetime."""
        async with self.sessions() as session, session.begin():
            lab = await repo.get_live_by_name(session=session, name=name)
            self._authorize(actor, lab, "extend")
            if lab.state not in (
                LabState.READY,
                LabState.EXPIRING,
                LabState.PROVISIONING,
                LabState.REQUESTED,
                LabState.FAILED,
            ):
                raise ConflictError(
                    f"lab `{name}` is {lab.state}; only a lab that is not being destroyed can be extended"
                )
            recipe = self.profiles.get(lab.profile)
            step = duration or (recipe.default_ttl if recipe else timedelta(hours=4))
            cap = lab.created_at + (recipe.max_ttl if recipe else step)
            base = max(lab.expires_at, self.clock())
            new_expiry = min(base + step, cap)
            if new_expiry <= lab.expires_at:
                raise QuotaError(
                    f"lab `{name}` already runs until its maximum lifetime "
                    f"({_human(recipe.max_ttl) if recipe else '?'} after creation)"
                )
            lab.expires_at = new_expiry
            lab.ttl_extensions += 1
            lab.warned_offsets = []
            if lab.state == LabState.EXPIRING:
                await repo.transition(
                    session=session, lab=lab, target=LabState.READY, actor=actor.user_id, detail="extended"
                )
            capped = " (capped at the profile's maximum lifetime)" if new_expiry == cap else ""
            await repo.add_event(
                session=session,
                lab=lab,
                actor=actor.user_id,
                kind="extended",
                detail=f"until {new_expiry:%Y-%m-%d %H:%M} UTC{capped}",
            )
            await repo.save(session=session)
            view = await self._view(session, lab)
        await self.notifier.notify(Notice(NoticeKind.EXTENDED, view, actor=actor.user_id, text=capped.strip()))
        return view

    async def retry(self, actor: Actor, name: str) -> LabView:
        """Re-run a failed lab from its failed step (or a failed destroy), owner or admin."""
        async with self.sessions() as session, session.begin():
            lab = await repo.get_live_by_name(session=session, name=name)
            self._authorize(actor, lab, "retry")
            if lab.state != LabState.FAILED:
                raise ConflictError(f"lab `{name}` is {lab.state}; only a failed lab can be retried")
            target = LabState.DESTROYING if lab.failed_step == "destroy" else LabState.PROVISIONING
            lab.error = None
            lab.next_attempt_at = None
            await repo.transition(
                session=session,
                lab=lab,
                target=target,
                actor=actor.user_id,
                detail=f"retry from {lab.failed_step or 'the start'}",
            )
            view = await self._view(session, lab)
        await self.notifier.notify(Notice(NoticeKind.RETRYING, view, actor=actor.user_id))
        self._kick(view.id)
        return view

    async def access(self, actor: Actor, name: str) -> AccessDetails:
        """The owner's (or an admin's) way into a ready lab: commands and credentials (show privately)."""
        lab = await self.status(name)
        self.check_can_act(actor, lab, "see how to reach")
        if lab.state not in (LabState.READY, LabState.EXPIRING) or not lab.vm1_public_ip or not lab.vm2_ip:
            raise ConflictError(f"lab `{name}` is {lab.state}; access details exist once it is ready")
        async with self.sessions() as session:
            row = await repo.get(session=session, lab_id=lab.id)
        if not row.host_password_enc or self.box is None:
            raise NotFoundError(f"lab `{name}` has no credentials any more")
        profile = self.profiles[lab.profile]
        commands = access_commands(lab.vm1_public_ip, profile.vm1.ssh_port, lab.vm2_ip, self.settings.ssh_user,
                                   ui_port=profile.install.ui_port, api_port=profile.install.api_port)
        return AccessDetails(
            lab=lab,
            commands=commands,
            root_password=self.box.decrypt(row.host_password_enc).get_secret_value(),
            zstack_user="admin",
            zstack_password=self.settings.nested_admin_password.get_secret_value(),
        )

    async def health(self, actor: Actor, name: str) -> HealthReport:
        """Run a ready lab's health checks now (anyone may look; results carry no secrets)."""
        lab = await self.status(name)
        if lab.state not in (LabState.READY, LabState.EXPIRING):
            raise ConflictError(f"lab `{name}` is {lab.state}; health checks run on ready labs")
        if self.health_runner is None:
            raise ConflictError("health checks are not available in this labbot")
        return await self.health_runner(lab.id)

    async def set_progress_ref(self, lab_id: int, ref: str) -> None:
        """Remember where a front end shows the lab's live progress (e.g. a Slack message)."""
        async with self.sessions() as session, session.begin():
            await repo.set_progress_ref(session=session, lab_id=lab_id, ref=ref)

    def check_can_act(self, actor: Actor, lab: LabView, verb: str) -> None:
        """Only the owner or an admin may destroy, extend, retry or see how to reach a lab."""
        if not (actor.is_admin or actor.user_id == lab.owner):
            raise PermissionDeniedError(f"only <@{lab.owner}> (the owner) or an admin can {verb} lab `{lab.name}`")

    # --- helpers -------------------------------------------------------------------------------------

    def is_admin(self, user_id: str) -> bool:
        """Whether the settings name this user an admin."""
        return user_id in self.settings.admin_users

    async def _lock_quotas(self, session: AsyncSession) -> None:
        """Serialize creates until this transaction ends, so counting live labs and inserting one is atomic
        (8 concurrent creates from one user made 7 labs against a quota of 2 without it)."""
        await claims.serialize_lab_creates(session=session)

    async def _check_quota(self, session: AsyncSession, actor: Actor) -> None:
        if await repo.count_live(session=session, owner=actor.user_id) >= self.settings.max_labs_per_user:
            raise QuotaError(
                f"you already have {self.settings.max_labs_per_user} live labs (the limit); "
                "destroy one first (`/lab list` shows them)"
            )
        if await repo.count_live(session=session) >= self.settings.max_labs_total:
            raise QuotaError(f"labbot already runs {self.settings.max_labs_total} labs (the global limit); try later")

    def _authorize(self, actor: Actor, lab: Lab, verb: str) -> None:
        if not (actor.is_admin or actor.user_id == lab.owner):
            raise PermissionDeniedError(f"only <@{lab.owner}> (the owner) or an admin can {verb} lab `{lab.name}`")

    async def _view(self, session: AsyncSession, lab: Lab) -> LabView:
        steps = await repo.list_steps(session=session, lab_id=lab.id)
        return lab_view(lab, steps, self.step_titles)

    def _kick(self, lab_id: int) -> None:
        if self.kicker is not None:
            self.kicker.kick(lab_id)


def _generated_name() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "lab-" + "".join(secrets.choice(alphabet) for _ in range(5))


def _human(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"
