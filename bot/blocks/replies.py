"""Block Kit for the answers to ``/lab`` commands and button clicks (``services.dispatch.Reply``) and errors.

One builder per ReplyKind; ``build_reply`` picks it. Whether the answer is shown to everyone or only to the
person who asked is the handler's business (``Reply.private``); access details are always private.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from bot.blocks import format as fmt
from bot.blocks.card import build_lab_card
from bot.blocks.classroom import (
    build_check_report,
    build_class_overview,
    build_confirm_class_destroy,
    build_pool_status,
)
from bot.blocks.details import build_access, build_health
from bot.blocks.ids import LabAction, LabRef, encode
from bot.blocks.kit import (
    Message,
    actions,
    button,
    clip,
    code_block,
    escape,
    fallback,
    fit_blocks,
    section,
)
from services.dispatch import Reply, ReplyKind
from services.i18n import _, ngettext
from services.labs.classes import ClassView
from services.labs.views import LabView, StepView

log = logging.getLogger(__name__)

LOG_TAIL_CHARS = 1800
MAX_LISTED_LABS = 30


def build_reply(reply: Reply, *, now: datetime) -> Message:
    """The message for one command outcome."""
    return _BUILDERS[reply.kind](reply, now)


def build_error(text: str, *, error_id: str | None = None) -> Message:
    """An error shown only to the person who asked; unknown errors carry an id that is also in the log."""
    body = (
        _(":warning: {dates_to_tokens}").format(dates_to_tokens=fmt.dates_to_tokens(escape(clip(text, 2500))))
        if error_id is None
        else (
            _(
                ":warning: Something went wrong on labbot's side. If it keeps happening, tell an admin the error "
                "id `{error_id}`."
            ).format(error_id=error_id)
        )
    )
    return Message(
        text=fallback(text if error_id is None else _("labbot error {error_id}").format(error_id=error_id)),
        blocks=[section(body)],
    )


def build_notice(text: str) -> Message:
    """A short plain answer (``Creating lab demo…``); a ``… UTC`` time the domain wrote becomes a date token."""
    return Message(text=fallback(text), blocks=[section(fmt.dates_to_tokens(escape(clip(text, 2900))))])


def build_created(name: str, *, card_in: str | None = None, text: str = "") -> Message:
    """``Creating lab demo…`` (or the service's own words: an exercise lab, a lab from the warm pool), saying where
    its card is when that is not where the person asked."""
    text = escape(text) if text else _("Creating lab `{escape}`…").format(escape=escape(name))
    if card_in:
        where = _("your DM with labbot") if card_in.startswith(("U", "D")) else f"<#{card_in}>"
        text += _(" Its card is in {where}.").format(where=where)
    return Message(text=fallback(_("Creating lab {name}").format(name=name)), blocks=[section(text)])


def build_extended(lab: LabView) -> Message:
    """``Lab demo now runs until <date>`` (a date token: the reader's own time zone)."""
    text = _("Lab `{escape}` now runs until {slack_date}.").format(
        escape=escape(lab.name), slack_date=fmt.slack_date(lab.expires_at)
    )
    return Message(text=fallback(_("Lab {name} extended").format(name=lab.name)), blocks=[section(text)])


def build_help(text: str) -> Message:
    """Usage of the ``/lab`` commands (the grammar's own help text, one command per line)."""
    return Message(text=fallback(_("labbot help")), blocks=[section(_("*labbot commands*\n") + clip(text, 2800))])


def build_lab_list(labs: Sequence[LabView], *, everyone: bool, now: datetime) -> Message:
    """One line per lab: state, name, owner, time left."""
    if not labs:
        text = _("No labs.") if everyone else _("You have no live labs. `/lab create` builds one.")
        return build_notice(text)
    lines = [_lab_line(lab, now) for lab in labs[:MAX_LISTED_LABS]]
    if len(labs) > MAX_LISTED_LABS:
        lines.append(_("_… and {value} more_").format(value=len(labs) - MAX_LISTED_LABS))
    title = _("*All labs*") if everyone else _("*Your labs*")
    count = ngettext("{n} lab", "{n} labs", len(labs)).format(n=len(labs))
    return Message(text=fallback(count), blocks=fit_blocks([section(title + "\n" + "\n".join(lines))]))


def build_logs(name: str, steps: Sequence[StepView]) -> Message:
    """The output tail of each step that ran, newest attempt only."""
    if not steps:
        return build_notice(_("Lab `{name}` has not run any step yet.").format(name=name))
    blocks = [section(_("*Logs of lab `{escape}`*").format(escape=escape(name)))]
    for step in steps:
        head = fmt.step_line(step)
        tail = step.output_tail or step.error or ""
        blocks.append(section(head + ("\n" + code_block(tail, LOG_TAIL_CHARS) if tail.strip() else "")))
    return Message(text=fallback(_("Logs of lab {name}").format(name=name)), blocks=fit_blocks(blocks))


def build_confirm_destroy(lab: LabView) -> Message:
    """``/lab destroy NAME`` without ``--yes``: ask first, privately."""
    ref = encode(LabRef(lab_id=lab.id, name=lab.name))
    blocks = [
        section(
            _(
                ":warning: Destroy lab `{escape}` of {user}? Both VMs, the data volume and the nested "
                "ZStack are deleted. This cannot be undone."
            ).format(escape=escape(lab.name), user=fmt.user(lab.owner))
        ),
        actions(
            [button(_("Destroy"), LabAction.DESTROY, ref, style="danger"), button(_("Keep it"), LabAction.CANCEL, ref)]
        ),
    ]
    return Message(text=fallback(_("Destroy lab {name}?").format(name=lab.name)), blocks=blocks)


def _lab_line(lab: LabView, now: datetime) -> str:
    left = "" if lab.state == "destroyed" else f" · {fmt.countdown(lab.expires_at, now)}"
    return (
        f"{fmt.STATE_EMOJI.get(lab.state, '')} `{lab.name}` · {fmt.STATE_WORD.get(lab.state, lab.state)} · "
        f"{fmt.user(lab.owner)} · `{escape(lab.profile)}`{left}"
    )


def _require_lab(reply: Reply) -> LabView:
    if reply.lab is None:
        raise ValueError(f"a {reply.kind} reply needs a lab")
    return reply.lab


def _require_class(reply: Reply) -> ClassView:
    if reply.klass is None:
        raise ValueError(f"a {reply.kind} reply needs a class")
    return reply.klass


def _short(reply: Reply, now: datetime) -> Message:
    return build_notice(reply.text)


_BUILDERS: dict[ReplyKind, Callable[[Reply, datetime], Message]] = {
    ReplyKind.HELP: lambda r, now: build_help(r.text),
    ReplyKind.CREATED: lambda r, now: build_created(_require_lab(r).name, card_in=r.data.get("card_in"), text=r.text),
    ReplyKind.DESTROYING: _short,
    ReplyKind.RETRYING: _short,
    ReplyKind.DOCTOR: _short,
    ReplyKind.EXTENDED: lambda r, now: build_extended(_require_lab(r)),
    ReplyKind.PICTURE: lambda r, now: build_notice(r.text),
    ReplyKind.CAPTURED: lambda r, now: build_notice(r.text),
    ReplyKind.LAB: lambda r, now: build_lab_card(_require_lab(r), now=now),
    ReplyKind.LABS: lambda r, now: build_lab_list(r.labs, everyone=bool(r.data.get("all")), now=now),
    ReplyKind.LOGS: lambda r, now: build_logs(str(r.data.get("name", "")), r.steps),
    ReplyKind.CONFIRM_DESTROY: lambda r, now: build_confirm_destroy(_require_lab(r)),
    ReplyKind.ACCESS: lambda r, now: build_access(r.data["access"]),
    ReplyKind.HEALTH: lambda r, now: build_health(r.data["report"], now=now),
    ReplyKind.CHECKED: lambda r, now: build_check_report(_require_lab(r)),
    ReplyKind.SOLVING: _short,
    ReplyKind.CLAIMED: _short,
    ReplyKind.CLASS: lambda r, now: build_class_overview(_require_class(r), now=now, text=r.text),
    ReplyKind.CONFIRM_CLASS_DESTROY: lambda r, now: build_confirm_class_destroy(_require_class(r)),
    ReplyKind.POOL: lambda r, now: build_pool_status(r.text, list(r.data.get("pools", []))),
}
