"""Channel messages the scheduler's notices become: health changes, expiry warnings, orphaned resources.

They go to the lab's channel (not the thread) because they ask someone to act; each mentions the owner.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from bot.blocks import format as fmt
from bot.blocks.card import destroy_button, extend_menu
from bot.blocks.ids import LabAction, LabRef, encode
from bot.blocks.kit import Message, actions, button, clip, context, escape, fallback, fit_blocks, section
from services.i18n import N_, Texts, _
from services.labs.views import LabView

log = logging.getLogger(__name__)

WARNING_BLOCK = "lab_expiry_warning"


def build_health_changed(lab: LabView, *, now: datetime, detail: str = "") -> Message:
    """A ready lab became degraded, failed differently, or recovered: what fails, in words, not check ids."""
    if lab.health == "ok":
        text = _(":large_green_circle: Lab `{name}` of {user} is healthy again.").format(
            name=lab.name, user=fmt.user(lab.owner)
        )
    else:
        failing = "\n".join(f"• {escape(fmt.check_label(c))}" for c in lab.health_failing[:10]) or _("• unknown checks")
        text = _(":large_orange_circle: Lab `{name}` of {user} is *{escape}*; failing:\n{clip}").format(
            name=lab.name, user=fmt.user(lab.owner), escape=escape(lab.health), clip=clip(failing, 1500)
        )
    if detail:
        text += "\n" + fmt.dates_to_tokens(escape(clip(detail, 1000)))
    ref = encode(LabRef(lab_id=lab.id, name=lab.name))
    blocks = [
        section(text),
        actions([button(_("Health"), LabAction.HEALTH, ref), button(_("Logs"), LabAction.LOGS, ref)]),
        context(_("checked {slack_date}").format(slack_date=fmt.slack_date(now))),
    ]
    return Message(
        text=fallback(_("Lab {name} health: {health}").format(name=lab.name, health=lab.health)), blocks=blocks
    )


def build_expiry_warning(
    lab: LabView, *, now: datetime, max_expires_at: datetime | None = None, extendable: bool = True, detail: str = ""
) -> Message:
    """A lab expires soon: tell the owner, with what they can do about it right there.

    A live lab offers Extend (when its profile allows more time); a failed lab offers Destroy instead (and
    Retry): extending a lab that does not work only keeps its resources longer.
    """
    when = fmt.slack_date(lab.expires_at)
    ref = encode(LabRef(lab_id=lab.id, name=lab.name))
    if lab.state == "failed":
        text = _(
            ":alarm_clock: {user}, lab `{name}` failed and is destroyed {when}. *Destroy* frees its "
            "resources now; *Retry* tries to finish it."
        ).format(user=fmt.user(lab.owner), name=lab.name, when=when)
        elements = [button(_("Retry"), LabAction.RETRY, ref), destroy_button(lab)]
    else:
        text = _(":alarm_clock: {user}, lab `{name}` expires {when} and is destroyed then").format(
            user=fmt.user(lab.owner), name=lab.name, when=when
        )
        if extendable:
            text += _(" unless extended.")
            if max_expires_at is not None:
                text += _(" It can run until {slack_date} at most (its profile's limit).").format(
                    slack_date=fmt.slack_date(max_expires_at)
                )
            elements = [extend_menu(lab)]
        else:
            text += _("; it is at its profile's maximum lifetime and cannot be extended.")
            elements = [button(_("Access"), LabAction.ACCESS, ref)]
    if detail:
        text += "\n" + fmt.dates_to_tokens(escape(clip(detail, 1000)))
    blocks = [section(text, block_id=WARNING_BLOCK), actions(elements)]
    return Message(text=fallback(_("Lab {name} expires soon").format(name=lab.name)), blocks=blocks)


# What became of a lab whose expiry warning no longer holds (the outcome ids the Slack notifier passes).
OUTCOMES = Texts({"destroyed": N_("destroyed"), "expired": N_("expired"), "extended": N_("extended")})


def build_warning_retired(lab: LabView, *, outcome: str, actor: str | None = None) -> Message:
    """What an earlier expiry warning becomes once it no longer holds: what happened instead, and no buttons
    (its Extend menu would otherwise keep offering a choice made already)."""
    by = _(" by {user}").format(user=fmt.user(actor)) if actor else ""
    if outcome == "extended":
        now_text = _("extended{by}; it now runs until {slack_date}").format(
            by=by, slack_date=fmt.slack_date(lab.expires_at)
        )
    else:
        now_text = f"{escape(OUTCOMES.get(outcome, outcome))}{by}"
    text = _("~:alarm_clock: Lab `{name}` expires soon~ Lab `{name}` was {now_text}.").format(
        name=lab.name, now_text=now_text
    )
    return Message(
        text=fallback(_("Lab {name}: {outcome}").format(name=lab.name, outcome=outcome)),
        blocks=[context(text, block_id=WARNING_BLOCK)],
    )


def build_owner_ready(lab: LabView, *, card_in: str) -> Message:
    """The owner's private word that their lab is ready (the card may be in a busy channel)."""
    ref = encode(LabRef(lab_id=lab.id, name=lab.name))
    text = _(
        ":white_check_mark: Your lab `{escape}` is ready. *Access* shows the SSH commands and the "
        "ZStack login (only to you); its card is in {where}."
    ).format(escape=escape(lab.name), where=where(card_in))
    blocks = [
        section(text),
        actions([button(_("Access"), LabAction.ACCESS, ref, style="primary"), button(_("Logs"), LabAction.LOGS, ref)]),
    ]
    return Message(text=fallback(_("Your lab {name} is ready").format(name=lab.name)), blocks=blocks)


def build_owner_failed(lab: LabView, *, card_in: str) -> Message:
    """The owner's private word that their lab failed, with Retry at hand."""
    ref = encode(LabRef(lab_id=lab.id, name=lab.name))
    at = (
        _(" at step `{escape}`").format(escape=escape(lab.failed_step))
        if lab.failed_step and lab.failed_step != "destroy"
        else ""
    )
    what = _("could not be destroyed") if lab.failed_step == "destroy" else _("failed{at}").format(at=at)
    error = escape(clip(lab.error or _("no error recorded"), 1000))
    text = _(
        ":x: Your lab `{escape}` {what}: {error}\nThe output is in its card's thread in {where}; "
        "*Retry* resumes from the failed step."
    ).format(escape=escape(lab.name), what=what, error=error, where=where(card_in))
    buttons = [button(_("Retry"), LabAction.RETRY, ref, style="primary"), button(_("Logs"), LabAction.LOGS, ref)]
    if lab.failed_step != "destroy":
        buttons.append(destroy_button(lab))
    return Message(
        text=fallback(_("Your lab {name} failed").format(name=lab.name)), blocks=[section(text), actions(buttons)]
    )


def where(channel: str) -> str:
    """A conversation as the reader sees it: ``<#C…>``, or "your DM with labbot"."""
    return _("your DM with labbot") if channel.startswith(("U", "D")) else f"<#{channel}>"


def build_expired(lab: LabView) -> Message:
    """A lab reached its expiry and labbot is destroying it: the short channel summary (details in its thread)."""
    text = _(
        ":hourglass: Lab `{escape}` of {user} expired {slack_date}; labbot is destroying it (its card "
        "and thread show the result)."
    ).format(escape=escape(clip(lab.name, 80)), user=fmt.user(lab.owner), slack_date=fmt.slack_date(lab.expires_at))
    return Message(text=fallback(_("Lab {name} expired").format(name=lab.name)), blocks=[section(text)])


def build_orphans_found(text: str, details: Mapping[str, object]) -> Message:
    """Platform resources labbot made that no live lab owns (for admins)."""
    lines = [
        f"• `{escape(clip(str(k), 80))}`: {fmt.dates_to_tokens(escape(clip(str(v), 200)))}"
        for k, v in list(details.items())[:40]
    ]
    what = fmt.dates_to_tokens(escape(clip(text, 500))) or _("found on the lab platform")
    body = _(":mag: *Orphaned resources*: {what}").format(what=what)
    if lines:
        body += "\n" + "\n".join(lines)
    return Message(text=fallback(_("Orphaned lab resources found")), blocks=fit_blocks([section(body)]))
