"""The lab service: what users and admins can ask for, with the rules that guard it.

Front ends (through ``services.dispatch``) call these methods with an ``Actor``; the service keeps the rules
(owner or admin, quotas, TTLs, which states allow what) and hands each decision to ``services.labs.lifecycle``,
which writes it with its audit events, announces it and kicks the engine. Nothing here talks to Slack.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.profiles import LabProfile
from config.settings import Settings
from services import claims
from services.crypto import SecretBox
from services.db import utcnow
from services.errors import (
    CommandError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    QuotaError,
)
from services.i18n import _
from services.labs import repository as repo
from services.labs.access import AccessDetails
from services.labs.build.health import HealthReport
from services.labs.classes import ClassService
from services.labs.lifecycle import SYSTEM, Change, Event, Lifecycle
from services.labs.models import Lab, LabState, StepState
from services.labs.notifier import Notice, NoticeKind, Notifier
from services.labs.picture import LabPicture, build_picture
from services.labs.pool import PoolService
from services.labs.preflight import Check
from services.labs.tasks import TaskResult, student_steps, validate_start
from services.labs.views import LabView, StepView, lab_view
from services.ssh.access import access_commands

if TYPE_CHECKING:
    from services.capture.service import CaptureReport
    from services.capture.spec import CaptureSpec

log = logging.getLogger(__name__)

# Every state but a destroy under way (or done) may have its expiry pushed out.
EXTENDABLE = frozenset({LabState.READY, LabState.EXPIRING, LabState.PROVISIONING, LabState.REQUESTED,
                        LabState.FAILED})


@dataclass(frozen=True)
class Actor:
    """Who asks: a Slack user id (or the console user), and whether they are an admin."""

    user_id: str
    is_admin: bool = False

    @classmethod
    def system(cls) -> Actor:
        """labbot itself (the scheduler, resume on start-up)."""
        return cls(SYSTEM, is_admin=True)


class GroupDirectory(Protocol):
    """Who is in a user group (``S…`` ids in ``LABBOT_ALLOWED_USERS``); the Slack front end provides one."""

    async def members(self, group_id: str) -> frozenset[str]:
        """The user ids in the group (empty when unknown)."""


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
        exercise_checker: Callable[[int], Awaitable[list[TaskResult]]] | None = None,
        hand_over: Callable[[int, str], Awaitable[None]] | None = None,
        doctor_runner: Callable[[str | None], Awaitable[list[Check]]] | None = None,
        capture_runner: Callable[[LabView, CaptureSpec, str], Awaitable[CaptureReport]] | None = None,
        clock: Callable[[], datetime] = utcnow,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        """``lifecycle`` writes the labs' states (one is made from ``notifier``, ``kicker`` and ``step_titles``
        when not given)."""
        self.sessions = sessions
        self.settings = settings
        self.profiles = profiles
        self.notifier = notifier
        self.step_titles = step_titles or {}
        self.box = box
        self.doctor_runner = doctor_runner
        self.health_runner = health_runner
        self.capacity_check = capacity_check
        self.exercise_checker = exercise_checker
        self.capture_runner = capture_runner
        self.clock = clock
        self.lifecycle = lifecycle or Lifecycle(sessions=sessions, notifier=notifier, titles=self.step_titles,
                                                kick=kicker.kick if kicker else None, clock=clock)
        # Set by the Slack front end: resolves user groups named in LABBOT_ALLOWED_USERS.
        self.group_directory: GroupDirectory | None = None
        self._checking: dict[int, asyncio.Lock] = {}
        self.classes = ClassService(self)
        self.pool = PoolService(self, hand_over=hand_over, destroy=lambda name: self.destroy(Actor.system(), name))
        for recipe in profiles.values():
            try:
                validate_start(recipe.exercise.start)
            except CommandError as err:
                raise ConfigError(
                    _("profile {name}: exercise.start: {message}").format(name=recipe.name, message=err.message)
                ) from None

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

    async def logs(self, actor: Actor, name: str, step: str | None = None) -> list[StepView]:
        """The steps (or one step) of a lab with their output tails (owner or admin: the output of a lab's
        commands is the owner's business, and the install log says a lot about their VMs)."""
        view = await self.status(name)
        self.check_can_act(actor, view, _("read the logs of"))
        if step is None:
            return [s for s in view.steps if s.state != StepState.PENDING]
        found = [s for s in view.steps if s.name == step]
        if not found:
            known = ", ".join(s.name for s in view.steps) or _("none yet")
            raise NotFoundError(
                _("lab `{name}` has no step `{step}` (steps: {known})").format(name=name, step=step, known=known)
            )
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
        exercise: bool = False,
        start: str | None = None,
    ) -> LabView:
        """Register a new lab and start building it; quota, TTL and name rules are checked first.

        An ``exercise`` lab is built only up to the student's first task (``start``, else the profile's).
        """
        await self.check_may_create(actor)
        profile_name, recipe, lifetime = self.recipe(profile, ttl)
        exercise_start = self.exercise_start(recipe, start) if exercise else None
        async with self.sessions() as session:
            await self._check_quota(session, actor)
        if exercise_start is None and recipe.pool.size > 0:
            claimed = await self.pool.claim(
                actor.user_id,
                profile=profile_name,
                name=name or _generated_name(),
                channel=channel,
                lifetime=lifetime,
                check_quota=lambda session: self._check_quota(session, actor),
            )
            if claimed is not None:
                await self.notifier.notify(Notice(NoticeKind.CREATED, claimed, actor=actor.user_id))
                await self.notifier.notify(
                    Notice(NoticeKind.READY, claimed, actor=actor.user_id, text=_("from the warm pool"))
                )
                return claimed
        if self.capacity_check is not None:
            # Asked before anything is written, so a full platform leaves no lab behind; the quota is checked
            # first because it costs no remote call.
            await self.capacity_check(recipe)

        async def quota_held(session: AsyncSession) -> None:
            await self._lock_quotas(session)
            await self._check_quota(session, actor)  # again, atomically: another create may have won meanwhile

        kind = _(", exercise from {exercise_start}").format(exercise_start=exercise_start) if exercise_start else ""
        return await self.lifecycle.create(
            name=name or _generated_name(),
            owner=actor.user_id,
            profile=profile_name,
            channel=channel,
            expires_at=self.clock() + lifetime,
            detail=_("profile {profile_name}, ttl {human}{kind}").format(
                profile_name=profile_name, human=_human(lifetime), kind=kind
            ),
            before=quota_held,
            fields={"exercise_start": exercise_start},
        )

    def has_pool(self, profile: str | None) -> bool:
        """Whether labs of ``profile`` (else the default one) come from a warm pool when it has one ready."""
        recipe = self.profiles.get(profile or self.settings.default_profile)
        return recipe is not None and recipe.pool.size > 0

    def recipe(self, profile: str | None, ttl: timedelta | None) -> tuple[str, LabProfile, timedelta]:
        """The profile to build (named, else the default) and the lifetime asked for, within its maximum."""
        profile_name = profile or self.settings.default_profile
        recipe = self.profiles.get(profile_name)
        if recipe is None:
            raise NotFoundError(
                _("there is no lab profile `{profile_name}` (profiles: {join})").format(
                    profile_name=profile_name, join=", ".join(sorted(self.profiles))
                )
            )
        lifetime = ttl or recipe.default_ttl
        if lifetime > recipe.max_ttl:
            raise QuotaError(
                _("a `{profile_name}` lab may live at most {human}; asked for {human2}").format(
                    profile_name=profile_name, human=_human(recipe.max_ttl), human2=_human(lifetime)
                )
            )
        return profile_name, recipe, lifetime

    @staticmethod
    def exercise_start(recipe: LabProfile, start: str | None) -> str:
        """Where an exercise of ``recipe`` starts: the step asked for, else the profile's default."""
        return validate_start(start or recipe.exercise.start)

    async def check(self, actor: Actor, name: str) -> LabView:
        """Check an exercise lab's tasks on its machines (owner or admin); the verdicts go on the lab's card.

        A check changes nothing on the lab's machines. What it finds is recorded: each task done or not with its
        hint, the target's wwid and the nested uuids (so `/lab solve` carries on from the student's work), and
        the time the exercise was completed, the first time every task passes.
        """
        lab = await self.status(name)
        self.check_can_act(actor, lab, "check")
        if lab.exercise is None:
            raise ConflictError(
                _("lab `{name}` is not an exercise lab; `/lab health {name}` checks a built lab").format(name=name)
            )
        if lab.state not in (LabState.READY, LabState.EXPIRING):
            raise ConflictError(
                _("lab `{name}` is {state}; its tasks can be checked once it is handed out").format(
                    name=name, state=lab.state
                )
            )
        if self.exercise_checker is None:
            raise ConflictError(_("exercise checks are not available in this labbot"))
        lock = self._checking.setdefault(lab.id, asyncio.Lock())
        if lock.locked():
            raise ConflictError(
                _("lab `{name}` is being checked right now; the card shows the result shortly").format(name=name)
            )
        async with lock:
            results = await self.exercise_checker(lab.id)
            await self._record_check(lab.id, results, actor)
        return await self.view(lab.id)

    async def _record_check(self, lab_id: int, results: list[TaskResult], actor: Actor) -> bool:
        """Record a check's verdicts and facts through the lifecycle (which announces them); True when this check
        completed the exercise. The task steps' rows follow the verdicts, so a solve skips what the student did."""
        completed = False
        done = sum(r.done for r in results)

        def decide(lab: Lab) -> Change:
            nonlocal completed
            now = self.clock()
            record = {
                **(lab.exercise or {}),
                "results": {r.step: r.as_record() for r in results},
                "checked_at": now.isoformat(),
            }
            completed = all(r.done for r in results) and not record.get("completed_at")
            fields: dict[str, object] = {}
            nested = dict(lab.nested_ids or {})
            for result in (r for r in results if r.done):
                fields.update(
                    {k: v for k, v in result.facts.items() if k in ("iscsi_iqn", "iscsi_wwid", "iscsi_size_bytes")}
                )
                nested.update(result.facts.get("nested_ids", {}))
            events: tuple[Event, ...] = ()
            if completed:
                record["completed_at"] = now.isoformat()
                took = _human_long(now - lab.created_at)
                events = (
                    Event("exercise_complete", _("every task passed, {took} after the lab was made").format(took=took)),
                )
            fields.update(nested_ids=nested, exercise=record)
            return Change(
                fields=fields,
                events=events,
                text=_("{done} of {len} tasks done").format(done=done, len=len(results)),
                notice=NoticeKind.EXERCISE_COMPLETE if completed else NoticeKind.EXERCISE_CHECKED,
            )

        await self.lifecycle.apply(decide, actor=actor.user_id, lab_id=lab_id)
        async with self.sessions() as session, session.begin():
            for row in await repo.list_steps(session=session, lab_id=lab_id):
                verdict = next((r for r in results if r.step == row.name), None)
                if verdict is not None and row.state != StepState.RUNNING:
                    row.state = StepState.DONE if verdict.done else StepState.PENDING
        return completed

    async def solve(self, actor: Actor, name: str, step: str) -> LabView:
        """Let labbot do an exercise task (and any earlier one not done) for a stuck student; audited."""

        def decide(lab: Lab) -> Change:
            self.check_can_act(actor, lab, _("solve a step of"))
            if lab.exercise_start is None:
                raise ConflictError(
                    _("lab `{name}` is not an exercise lab: labbot already built all of it").format(name=name)
                )
            tasks = student_steps(lab.exercise_start)
            if step not in tasks:
                raise CommandError(
                    _("`{value}` is not a task of lab `{name}`; its tasks: {join}").format(
                        value=step[:40], name=name, join=", ".join(tasks)
                    )
                )
            if lab.state != LabState.READY:
                hint = (
                    _(" (extend it first: `/lab extend {name}`)").format(name=name)
                    if lab.state == LabState.EXPIRING
                    else ""
                )
                raise ConflictError(
                    _("lab `{name}` is {state}; labbot can do a task of a ready lab{hint}").format(
                        name=name, state=lab.state, hint=hint
                    )
                )
            if (lab.exercise or {}).get("results", {}).get(step, {}).get("done"):
                raise ConflictError(
                    _("`{step}` of lab `{name}` is already done (`/lab check {name}` to see)").format(
                        step=step, name=name
                    )
                )
            return Change(
                to=LabState.PROVISIONING,
                fields={"exercise": {**(lab.exercise or {}), "solving": step}},
                detail=_("solve {step} asked by {user_id}").format(step=step, user_id=actor.user_id),
                notice=NoticeKind.RETRYING,
                text=_("labbot does {step} for <@{user_id}>").format(step=step, user_id=actor.user_id),
                kick=True,
            )

        return await self._apply(decide, actor, name)

    async def destroy(self, actor: Actor, name: str) -> LabView:
        """Ask for a lab to be torn down (owner or admin); a lab already being destroyed is left as is."""

        def decide(lab: Lab) -> Change:
            self.check_can_act(actor, lab, "destroy")
            if lab.state == LabState.DESTROYING:
                raise ConflictError(_("lab `{name}` is already being destroyed").format(name=name))
            return Change(
                to=LabState.DESTROYING,
                fields={"destroy_requested_by": actor.user_id, "next_attempt_at": None},
                detail=_("destroy requested"),
                notice=NoticeKind.DESTROYING,
                kick=True,
            )

        return await self._apply(decide, actor, name)

    async def extend(self, actor: Actor, name: str, duration: timedelta | None = None) -> LabView:
        """Push the expiry out (owner or admin), never past the profile's maximum lifetime."""

        def decide(lab: Lab) -> Change:
            self.check_can_act(actor, lab, "extend")
            if lab.state not in EXTENDABLE:
                raise ConflictError(
                    _("lab `{name}` is {state}; only a lab that is not being destroyed can be extended").format(
                        name=name, state=lab.state
                    )
                )
            recipe = self.profiles.get(lab.profile)
            step = duration or (recipe.default_ttl if recipe else timedelta(hours=4))
            cap = lab.created_at + (recipe.max_ttl if recipe else step)
            new_expiry = min(max(lab.expires_at, self.clock()) + step, cap)
            if new_expiry <= lab.expires_at:
                raise QuotaError(
                    _("lab `{name}` already runs until its maximum lifetime ({value} after creation)").format(
                        name=name, value=_human(recipe.max_ttl) if recipe else "?"
                    )
                )
            capped = _(" (capped at the profile's maximum lifetime)") if new_expiry == cap else ""
            return Change(
                to=LabState.READY if lab.state == LabState.EXPIRING else None,
                fields={"expires_at": new_expiry, "ttl_extensions": lab.ttl_extensions + 1, "warned_offsets": []},
                detail="extended",
                events=(
                    Event(
                        "extended",
                        _("until {new_expiry:%Y-%m-%d %H:%M} UTC{capped}").format(new_expiry=new_expiry, capped=capped),
                    ),
                ),
                notice=NoticeKind.EXTENDED,
                text=capped.strip(),
            )

        return await self._apply(decide, actor, name)

    async def retry(self, actor: Actor, name: str) -> LabView:
        """Re-run a failed lab from its failed step (or a failed destroy), owner or admin."""

        def decide(lab: Lab) -> Change:
            self.check_can_act(actor, lab, "retry")
            if lab.state != LabState.FAILED:
                raise ConflictError(
                    _("lab `{name}` is {state}; only a failed lab can be retried").format(name=name, state=lab.state)
                )
            return Change(
                to=LabState.DESTROYING if lab.failed_step == "destroy" else LabState.PROVISIONING,
                fields={"error": None, "next_attempt_at": None},
                detail=_("retry from {value}").format(value=lab.failed_step or "the start"),
                notice=NoticeKind.RETRYING,
                kick=True,
            )

        return await self._apply(decide, actor, name)

    async def access(self, actor: Actor, name: str) -> AccessDetails:
        """The owner's (or an admin's) way into a ready lab: commands and credentials (show privately)."""
        lab = await self.status(name)
        self.check_can_act(actor, lab, _("see how to reach"))
        if lab.state not in (LabState.READY, LabState.EXPIRING) or not lab.vm1_public_ip or not lab.vm2_ip:
            raise ConflictError(
                _("lab `{name}` is {state}; access details exist once it is ready").format(name=name, state=lab.state)
            )
        async with self.sessions() as session:
            row = await repo.get(session=session, lab_id=lab.id)
        if not row.host_password_enc or self.box is None:
            raise NotFoundError(_("lab `{name}` has no credentials any more").format(name=name))
        profile = self.profiles[lab.profile]
        commands = access_commands(
            lab.vm1_public_ip,
            profile.vm1.ssh_port,
            lab.vm2_ip,
            self.settings.ssh_user,
            ui_port=profile.install.ui_port,
            api_port=profile.install.api_port,
        )
        return AccessDetails(
            lab=lab,
            commands=commands,
            root_password=self.box.decrypt(row.host_password_enc).get_secret_value(),
            zstack_user="admin",
            # Labs made before the per-lab password still have the installer's default.
            zstack_password=(
                self.box.decrypt(row.nested_password_enc)
                if row.nested_password_enc
                else self.settings.nested_admin_password
            ).get_secret_value(),
        )

    async def health(self, actor: Actor, name: str) -> HealthReport:
        """Run a ready lab's health checks now (owner or admin, at most once per interval per lab: each run
        opens SSH sessions into the lab's VMs and writes health rows)."""
        lab = await self.status(name)
        self.check_can_act(actor, lab, _("check the health of"))
        if lab.state not in (LabState.READY, LabState.EXPIRING):
            raise ConflictError(
                _("lab `{name}` is {state}; health checks run on ready labs").format(name=name, state=lab.state)
            )
        if self.health_runner is None:
            raise ConflictError(_("health checks are not available in this labbot"))
        await self._limit_on_demand_health(lab)
        return await self.health_runner(lab.id)

    async def picture_of(self, lab_id: int) -> LabPicture:
        """The lab's picture from its record and profile (the front ends draw it)."""
        async with self.sessions() as session:
            lab = await repo.get(session=session, lab_id=lab_id)
            steps = await repo.list_steps(session=session, lab_id=lab_id)
            profile = self.profiles.get(lab.profile)
            if profile is None:
                raise NotFoundError(
                    _("lab `{name}` uses profile `{profile}`, which labbot no longer has").format(
                        name=lab.name, profile=lab.profile
                    )
                )
            return build_picture(lab, profile, steps)

    async def picture(self, actor: Actor, name: str) -> LabPicture:
        """Post the picture of a live lab again, in its thread (anyone may look, as with ``status``)."""
        view = await self.status(name)
        if view.state == LabState.DESTROYED:
            raise ConflictError(_("lab `{name}` is destroyed; there is nothing left to draw").format(name=name))
        picture = await self.picture_of(view.id)
        await self.notifier.notify(Notice(NoticeKind.PICTURE, view, actor=actor.user_id, details={"picture": picture}))
        return picture

    async def capture(self, actor: Actor, name: str, spec: CaptureSpec) -> CaptureReport:
        """A bounded packet capture on a ready lab's VM1 (owner or admin), shown in the lab's thread."""
        lab = await self.status(name)
        self.check_can_act(actor, lab, _("capture the traffic of"))
        if self.capture_runner is None:
            raise ConflictError(_("packet captures are not available in this labbot"))
        return await self.capture_runner(lab, spec, actor.user_id)

    async def set_progress_ref(self, lab_id: int, ref: str) -> None:
        """Remember where a front end shows the lab's live progress (e.g. a Slack message)."""
        async with self.sessions() as session, session.begin():
            await repo.set_progress_ref(session=session, lab_id=lab_id, ref=ref)

    def check_can_act(self, actor: Actor, lab: Lab | LabView, verb: str) -> None:
        """Only the owner or an admin may destroy, extend, retry or see how to reach a lab."""
        if not (actor.is_admin or actor.user_id == lab.owner):
            raise PermissionDeniedError(
                _("only <@{owner}> (the owner) or an admin can {verb} lab `{name}`").format(
                    owner=lab.owner, verb=verb, name=lab.name
                )
            )

    async def doctor(self, actor: Actor, profile: str | None) -> list[Check]:
        """Run ``labbot doctor``'s checks (admins only: they describe the platform and its credentials' use)."""
        if not actor.is_admin:
            raise PermissionDeniedError(_("only an admin can run `/lab doctor`"))
        if self.doctor_runner is None:
            raise ConflictError(_("this labbot process cannot run the doctor (no platform client)"))
        return await self.doctor_runner(profile)

    # --- helpers -------------------------------------------------------------------------------------

    def is_admin(self, user_id: str) -> bool:
        """Whether the settings name this user an admin."""
        return user_id in self.settings.admin_users

    async def _limit_on_demand_health(self, lab: LabView) -> None:
        """At most one on-demand health run per lab per interval, across replicas (a claim in the database)."""
        interval = self.settings.health_on_demand_interval_seconds
        if interval and not await claims.claim(
            self.sessions, f"health:{lab.id}", until=self.clock() + timedelta(seconds=interval)
        ):
            raise QuotaError(
                _(
                    "lab `{name}` was checked on demand less than {interval} s ago; try again "
                    "later (the health sweep also checks it every {health_interval_minutes} "
                    "minutes)"
                ).format(
                    name=lab.name, interval=interval, health_interval_minutes=self.settings.health_interval_minutes
                )
            )

    async def check_may_create(self, actor: Actor) -> None:
        """Refuse people ``LABBOT_ALLOWED_USERS`` does not name, directly or through a user group (admins may
        always create)."""
        allowed = self.settings.allowed_users
        if not allowed or actor.is_admin or actor.user_id == SYSTEM or actor.user_id in allowed:
            return
        for group in (entry for entry in allowed if entry.startswith("S")):
            if self.group_directory is not None and actor.user_id in await self.group_directory.members(group):
                return
        raise PermissionDeniedError(
            _(
                "you may not create labs here: ask a labbot admin to add you (or a "
                "group you are in) to LABBOT_ALLOWED_USERS"
            )
        )

    async def _lock_quotas(self, session: AsyncSession) -> None:
        """Serialize creates until this transaction ends, so counting live labs and inserting one is atomic
        (8 concurrent creates from one user made 7 labs against a quota of 2 without it)."""
        await claims.serialize_lab_creates(session=session)

    async def _check_quota(self, session: AsyncSession, actor: Actor) -> None:
        if await repo.count_live(session=session, owner=actor.user_id) >= self.settings.max_labs_per_user:
            raise QuotaError(
                _(
                    "you already have {max_labs_per_user} live labs (the limit); destroy one first (`/lab "
                    "list` shows them)"
                ).format(max_labs_per_user=self.settings.max_labs_per_user)
            )
        if await repo.count_live(session=session) >= self.settings.max_labs_total:
            raise QuotaError(
                _("labbot already runs {max_labs_total} labs (the global limit); try later").format(
                    max_labs_total=self.settings.max_labs_total
                )
            )

    async def _apply(self, decide: Callable[[Lab], Change], actor: Actor, name: str) -> LabView:
        view = await self.lifecycle.apply(decide, actor=actor.user_id, name=name)
        assert view is not None  # these decisions always change something or raise
        return view

    async def _view(self, session: AsyncSession, lab: Lab) -> LabView:
        steps = await repo.list_steps(session=session, lab_id=lab.id)
        return lab_view(lab, steps, self.step_titles)

    def kick(self, lab_id: int) -> None:
        """Tell the engine this lab has work (a build or a destroy)."""
        if self.lifecycle.kick is not None:
            self.lifecycle.kick(lab_id)


def _generated_name() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "lab-" + "".join(secrets.choice(alphabet) for _ in range(5))


def _human_long(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"


def _human(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"
