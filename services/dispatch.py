"""Front-end-neutral command handling: a parsed command in, a ``Reply`` out.

Slack and the console both parse with services.commands, call ``execute``, and render the Reply their own
way (Block Kit or rich). Errors are not caught here: each front end translates them once, at its edge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from services.commands import (
    AccessCommand,
    CaptureCommand,
    CheckCommand,
    ClassClaimCommand,
    ClassCreateCommand,
    ClassDestroyCommand,
    ClassExtendCommand,
    ClassStatusCommand,
    Command,
    CreateCommand,
    DestroyCommand,
    DoctorCommand,
    ExtendCommand,
    HealthCommand,
    HelpCommand,
    ListCommand,
    LogsCommand,
    PictureCommand,
    PoolStatusCommand,
    RetryCommand,
    SolveCommand,
    StatusCommand,
    help_text,
)
from services.doctor import render as render_checks
from services.errors import PermissionDeniedError
from services.i18n import _, ngettext
from services.labs.classes import ClassView
from services.labs.service import Actor, LabService
from services.labs.views import LabView, StepView


class ReplyKind(enum.StrEnum):
    """What a reply shows; each front end has one renderer per kind."""

    HELP = "help"
    CREATED = "created"
    LAB = "lab"
    LABS = "labs"
    LOGS = "logs"
    ACCESS = "access"
    HEALTH = "health"
    CONFIRM_DESTROY = "confirm_destroy"
    DESTROYING = "destroying"
    EXTENDED = "extended"
    RETRYING = "retrying"
    PICTURE = "picture"
    CAPTURED = "captured"
    CHECKED = "checked"
    SOLVING = "solving"
    CLASS = "class"
    CLAIMED = "claimed"
    CONFIRM_CLASS_DESTROY = "confirm_class_destroy"
    POOL = "pool"
    DOCTOR = "doctor"


@dataclass(frozen=True)
class Reply:
    """The answer to one command. ``private`` replies go only to the person who asked."""

    kind: ReplyKind
    text: str = ""
    lab: LabView | None = None
    labs: tuple[LabView, ...] = ()
    steps: tuple[StepView, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)
    private: bool = True
    klass: ClassView | None = None


async def execute(command: Command, *, actor: Actor, service: LabService, channel: str | None = None) -> Reply:
    """Carry out one command for ``actor`` and describe the outcome."""
    match command:
        case HelpCommand(topic=topic):
            return Reply(ReplyKind.HELP, text=help_text(topic))
        case CreateCommand(name=name, ttl=ttl, profile=profile, exercise=exercise, start=start):
            lab = await service.create(actor, name=name, profile=profile, ttl=ttl, channel=channel, exercise=exercise,
                                       start=start)
            if lab.state == "ready":
                return Reply(
                    ReplyKind.CREATED,
                    text=_(
                        "Lab `{name}` is ready: it came from the warm pool, "
                        "with fresh credentials (`/lab access` shows them)"
                    ).format(name=lab.name),
                    lab=lab,
                    private=False,
                )
            empty = (
                _(" (the warm pool has no lab ready: building one)")
                if not exercise and service.has_pool(profile)
                else ""
            )
            return Reply(
                ReplyKind.CREATED,
                text=(_("Creating exercise lab `{name}`…") if exercise else _("Creating lab `{name}`…")).format(
                    name=lab.name
                )
                + empty,
                lab=lab,
                private=False,
            )
        case ListCommand(all=everything):
            if everything and not actor.is_admin:
                labs = await service.list_labs(actor, everything=True)
                labs = [lab for lab in labs if lab.state != "destroyed" or lab.owner == actor.user_id]
            else:
                labs = await service.list_labs(actor, everything=everything)
            return Reply(ReplyKind.LABS, labs=tuple(labs), data={"all": everything})
        case StatusCommand(name=name):
            return Reply(ReplyKind.LAB, lab=await service.status(name))
        case DestroyCommand(name=name, yes=False):
            lab = await service.status(name)
            service.check_can_act(actor, lab, "destroy")
            return Reply(
                ReplyKind.CONFIRM_DESTROY,
                lab=lab,
                text=_("Destroy lab `{name}`? This cannot be undone.").format(name=name),
            )
        case DestroyCommand(name=name, yes=True):
            lab = await service.destroy(actor, name)
            return Reply(
                ReplyKind.DESTROYING, lab=lab, text=_("Destroying lab `{name}`…").format(name=name), private=False
            )
        case ExtendCommand(name=name, duration=duration):
            lab = await service.extend(actor, name, duration)
            return Reply(
                ReplyKind.EXTENDED,
                lab=lab,
                text=_("Lab `{name}` now expires {expires_at:%Y-%m-%d %H:%M} UTC").format(
                    name=name, expires_at=lab.expires_at
                ),
            )
        case RetryCommand(name=name):
            lab = await service.retry(actor, name)
            return Reply(ReplyKind.RETRYING, lab=lab, text=_("Retrying lab `{name}`…").format(name=name), private=False)
        case LogsCommand(name=name, step=step):
            steps = await service.logs(actor, name, step)
            return Reply(
                ReplyKind.LOGS,
                steps=tuple(steps),
                text=_("Logs of lab `{name}`").format(name=name),
                data={"name": name},
            )
        case AccessCommand(name=name):
            access = await service.access(actor, name)
            return Reply(ReplyKind.ACCESS, lab=access.lab, data={"access": access})
        case DoctorCommand(profile=profile):
            checks = await service.doctor(actor, profile)
            problems = sum(not c.ok for c in checks)
            text = "\n".join(
                [
                    *render_checks(checks),
                    ngettext("{checks} checks, {n} problem", "{checks} checks, {n} problems", problems).format(
                        checks=len(checks), n=problems
                    ),
                ]
            )
            return Reply(ReplyKind.DOCTOR, text=text, data={"checks": tuple(checks)})
        case PictureCommand(name=name):
            picture = await service.picture(actor, name)
            return Reply(
                ReplyKind.PICTURE,
                text=_("The picture of lab `{name}` is in its thread.").format(name=name),
                data={"picture": picture},
            )
        case CaptureCommand(name=name, spec=spec):
            capture = await service.capture(actor, name, spec)
            return Reply(
                ReplyKind.CAPTURED,
                lab=capture.lab,
                data={"capture": capture},
                text=_("The capture of lab `{name}` and its summary are in the lab's thread.").format(name=name),
            )
        case HealthCommand(name=name):
            report = await service.health(actor, name)
            return Reply(ReplyKind.HEALTH, lab=report.lab, data={"report": report})
        case CheckCommand(name=name):
            lab = await service.check(actor, name)
            assert lab.exercise is not None
            return Reply(
                ReplyKind.CHECKED,
                lab=lab,
                text=_("Lab `{name}`: {done} of {total} steps done").format(
                    name=name, done=lab.exercise.done, total=lab.exercise.total
                ),
            )
        case SolveCommand(name=name, step=step):
            lab = await service.solve(actor, name, step)
            return Reply(
                ReplyKind.SOLVING,
                lab=lab,
                text=_("labbot is doing `{step}` of lab `{name}`…").format(step=step, name=name),
                private=False,
            )
        case ClassCreateCommand() as c:
            cls = await service.classes.create(
                actor,
                name=c.name,
                count=c.count,
                students=c.students,
                exercise=c.exercise,
                start=c.start,
                ttl=c.ttl,
                profile=c.profile,
                channel=channel,
            )
            return Reply(
                ReplyKind.CLASS,
                klass=cls,
                private=False,
                text=_("Creating class `{name}`: {count} labs ({claimable} to claim)…").format(
                    name=c.name, count=c.count, claimable=cls.claimable
                ),
            )
        case ClassStatusCommand(name=name):
            return Reply(ReplyKind.CLASS, klass=await service.classes.status(name), private=False)
        case ClassClaimCommand(name=name):
            lab = await service.classes.claim(actor, name)
            return Reply(
                ReplyKind.CLAIMED,
                lab=lab,
                text=_("Lab `{name}` of class `{name2}` is yours; `/lab access {name}` once it is ready").format(
                    name=lab.name, name2=name
                ),
            )
        case ClassExtendCommand(name=name, duration=duration):
            cls, problems = await service.classes.extend(actor, name, duration)
            text = _("Class `{name}` extended").format(name=name) + (
                _("; not extended: ") + "; ".join(problems) if problems else ""
            )
            return Reply(ReplyKind.CLASS, klass=cls, text=text)
        case ClassDestroyCommand(name=name, yes=False):
            cls = await service.classes.status(name)
            if not (actor.is_admin or actor.user_id == cls.trainer):
                raise PermissionDeniedError(
                    _("only the trainer (<@{trainer}>) or an admin can destroy class `{name}`").format(
                        trainer=cls.trainer, name=name
                    )
                )
            return Reply(
                ReplyKind.CONFIRM_CLASS_DESTROY,
                klass=cls,
                text=_("Destroy class `{name}` and its {len} live labs? This cannot be undone.").format(
                    name=name, len=len(cls.live_labs)
                ),
            )
        case ClassDestroyCommand(name=name, yes=True):
            cls = await service.classes.destroy(actor, name)
            return Reply(
                ReplyKind.CLASS,
                klass=cls,
                private=False,
                text=_("Destroying class `{name}`: {len} labs…").format(name=name, len=len(cls.live_labs)),
            )
        case PoolStatusCommand():
            if not actor.is_admin:
                raise PermissionDeniedError(_("only admins can see the warm pools"))
            return Reply(
                ReplyKind.POOL,
                data={"pools": await service.pool.status()},
                text=_("Warm pools")
                if service.pool.pooled_profiles()
                else _("No profile asks for a warm pool (`pool: {size: N}` in a lab profile)"),
            )
    raise AssertionError(f"unhandled command {command!r}")
