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
from services.labs.views import LabView

log = logging.getLogger(__name__)


def build_health_changed(lab: LabView, *, now: datetime, detail: str = "") -> Message:
    """A ready lab became degraded, or recovered."""
    if lab.health == "ok":
        text = f":large_green_circle: Lab `{lab.name}` of {fmt.user(lab.owner)} is healthy again."
    else:
        failing = ", ".join(escape(c) for c in lab.health_failing[:10]) or "unknown checks"
        text = f":large_orange_circle: Lab `{lab.name}` of {fmt.user(lab.owner)} is *{escape(lab.health)}*: " \
               f"failing {clip(failing, 500)}."
    if detail:
        text += "\n" + escape(clip(detail, 1000))
    ref = encode(LabRef(lab_id=lab.id, name=lab.name))
    blocks = [section(text), actions([button("Health", LabAction.HEALTH, ref), button("Logs", LabAction.LOGS, ref)]),
              context(f"checked {fmt.slack_date(now)}")]
    return Message(text=fallback(f"Lab {lab.name} health: {lab.health}"), blocks=blocks)


def build_expiry_warning(lab: LabView, *, now: datetime, detail: str = "") -> Message:
    """A lab expires soon: tell the owner, with Extend right there."""
    text = (f":alarm_clock: {fmt.user(lab.owner)}, lab `{lab.name}` expires in "
            f"{fmt.countdown(lab.expires_at, now)}; it is destroyed then unless extended.")
    if detail:
        text += "\n" + escape(clip(detail, 1000))
    blocks = [section(text), actions([extend_menu(lab)])]
    return Message(text=fallback(f"Lab {lab.name} expires soon"), blocks=blocks)


def build_owner_ready(lab: LabView, *, card_in: str) -> Message:
    """The owner's private word that their lab is ready (the card may be in a busy channel)."""
    ref = encode(LabRef(lab_id=lab.id, name=lab.name))
    text = (f":white_check_mark: Your lab `{escape(lab.name)}` is ready. *Access* shows the SSH commands and the "
            f"ZStack login (only to you); its card is in {where(card_in)}.")
    blocks = [section(text), actions([button("Access", LabAction.ACCESS, ref, style="primary"),
                                      button("Logs", LabAction.LOGS, ref)])]
    return Message(text=fallback(f"Your lab {lab.name} is ready"), blocks=blocks)


def build_owner_failed(lab: LabView, *, card_in: str) -> Message:
    """The owner's private word that their lab failed, with Retry at hand."""
    ref = encode(LabRef(lab_id=lab.id, name=lab.name))
    at = f" at step `{escape(lab.failed_step)}`" if lab.failed_step and lab.failed_step != "destroy" else ""
    what = "could not be destroyed" if lab.failed_step == "destroy" else f"failed{at}"
    error = escape(clip(lab.error or "no error recorded", 1000))
    text = (f":x: Your lab `{escape(lab.name)}` {what}: {error}\nThe output is in its card's thread in "
            f"{where(card_in)}; *Retry* resumes from the failed step.")
    buttons = [button("Retry", LabAction.RETRY, ref, style="primary"), button("Logs", LabAction.LOGS, ref)]
    if lab.failed_step != "destroy":
        buttons.append(destroy_button(lab))
    return Message(text=fallback(f"Your lab {lab.name} failed"), blocks=[section(text), actions(buttons)])


def where(channel: str) -> str:
    """A conversation as the reader sees it: ``<#C…>``, or "your DM with labbot"."""
    return "your DM with labbot" if channel.startswith(("U", "D")) else f"<#{channel}>"


def build_expired(lab: LabView) -> Message:
    """A lab reached its expiry and labbot is destroying it: the short channel summary (details in its thread)."""
    text = (f":hourglass: Lab `{escape(clip(lab.name, 80))}` of {fmt.user(lab.owner)} expired at "
            f"{lab.expires_at:%Y-%m-%d %H:%M} UTC; labbot is destroying it (its card and thread show the result).")
    return Message(text=fallback(f"Lab {lab.name} expired"), blocks=[section(text)])


def build_orphans_found(text: str, details: Mapping[str, object]) -> Message:
    """Platform resources labbot made that no live lab owns (for admins)."""
    lines = [f"• `{escape(clip(str(k), 80))}`: {escape(clip(str(v), 200))}" for k, v in list(details.items())[:40]]
    body = f":mag: *Orphaned resources*: {escape(clip(text, 500)) or 'found on the lab platform'}"
    if lines:
        body += "\n" + "\n".join(lines)
    return Message(text=fallback("Orphaned lab resources found"), blocks=fit_blocks([section(body)]))
