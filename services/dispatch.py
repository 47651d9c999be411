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
    Command,
    CreateCommand,
    DestroyCommand,
    ExtendCommand,
    HealthCommand,
    HelpCommand,
    ListCommand,
    LogsCommand,
    RetryCommand,
    StatusCommand,
    help_text,
)
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


async def execute(command: Command, *, actor: Actor, service: LabService, channel: str | None = None) -> Reply:
    """Carry out one command for ``actor`` and describe the outcome."""
    match command:
        case HelpCommand(topic=topic):
            return Reply(ReplyKind.HELP, text=help_text(topic))
        case CreateCommand(name=name, ttl=ttl, profile=profile):
            lab = await service.create(actor, name=name, profile=profile, ttl=ttl, channel=channel)
            return Reply(ReplyKind.CREATED, text=f"Creating lab `{lab.name}`…", lab=lab, private=False)
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
            return Reply(ReplyKind.CONFIRM_DESTROY, lab=lab, text=f"Destroy lab `{name}`? This cannot be undone.")
        case DestroyCommand(name=name, yes=True):
            lab = await service.destroy(actor, name)
            return Reply(ReplyKind.DESTROYING, lab=lab, text=f"Destroying lab `{name}`…", private=False)
        case ExtendCommand(name=name, duration=duration):
            lab = await service.extend(actor, name, duration)
            return Reply(
                ReplyKind.EXTENDED, lab=lab, text=f"Lab `{name}` now expires {lab.expires_at:%Y-%m-%d %H:%M} UTC"
            )
        case RetryCommand(name=name):
            lab = await service.retry(actor, name)
            return Reply(ReplyKind.RETRYING, lab=lab, text=f"Retrying lab `{name}`…", private=False)
        case LogsCommand(name=name, step=step):
            steps = await service.logs(name, step)
            return Reply(ReplyKind.LOGS, steps=tuple(steps), text=f"Logs of lab `{name}`", data={"name": name})
        case AccessCommand(name=name):
            access = await service.access(actor, name)
            return Reply(ReplyKind.ACCESS, lab=access.lab, data={"access": access})
        case HealthCommand(name=name):
            report = await service.health(actor, name)
            return Reply(ReplyKind.HEALTH, lab=report.lab, data={"report": report})
    raise AssertionError(f"unhandled command {command!r}")
