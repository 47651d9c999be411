"""The lab card: one message per lab in its channel, rebuilt from a LabView and updated in place.

A card is read at a glance: state, owner and expiry (a Slack date token, in the reader's zone), the current
step while building or the failure once, what to do next, and the buttons that apply to the lab's state, so a
click that changes the state also removes the buttons that no longer apply. The step list and the details of
a ready lab (never credentials) are in the card's thread, in the build report, and behind *Logs*.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from bot.blocks import format as fmt
from bot.blocks.classroom import exercise_blocks
from bot.blocks.ids import CardBlock, ExtendChoice, LabAction, LabRef, encode
from bot.blocks.kit import (
    Block,
    Message,
    actions,
    button,
    clip,
    confirm,
    context,
    escape,
    fallback,
    fit_blocks,
    header,
    option,
    section,
    static_select,
)
from services.i18n import N_, Texts, _
from services.labs.views import LabView

log = logging.getLogger(__name__)

EXTEND_CHOICES = ("1h", "4h", "1d")
LIVE_UNTIL_DESTROYED = ("requested", "provisioning", "ready", "expiring", "failed")
# Keys of the ready summary that must never be shown in a channel, whatever the pipeline puts there.
_SECRET_KEY = re.compile(r"pass|secret|token|private|credential|key$", re.IGNORECASE)
_SUMMARY_LABELS = Texts({
    "primary_storage": N_("SharedBlock storage"),
    "nested_vm": N_("Nested VM"),
    "ui": N_("ZStack UI"),
    "zone": N_("Zone"),
    "cluster": N_("Cluster"),
    "host": N_("KVM host"),
})


@dataclass(frozen=True)
class CardNote:
    """Who last did something to the lab from Slack, and when: shown at the foot of the card."""

    actor: str
    what: str
    at: datetime


def build_lab_card(lab: LabView, *, now: datetime, note: CardNote | None = None) -> Message:
    """The card for ``lab`` as it is at ``now``: a glance (always within Slack's message limits).

    State, owner and expiry on one line; while building, the current step; what to do next; who did what
    last; the buttons that apply. The step list lives in the thread (the build report, each failure with its
    output) and behind *Logs*, not on the card. A classroom lab also shows its exercise.
    """
    blocks: list[Block] = [header(_("Lab {name}").format(name=lab.name), CardBlock.HEADER),
                           section(_glance(lab, now), block_id=CardBlock.FIELDS)]
    blocks.extend(_current(lab))
    if lab.exercise is not None and lab.state in ("ready", "expiring", "provisioning"):
        blocks.extend(exercise_blocks(lab.exercise))
    blocks.append(context(_next_action(lab), block_id=CardBlock.NEXT))
    tail: list[Block] = []
    if note is not None:
        tail.append(
            context(
                _("{escape} by {user} · {slack_date}").format(
                    escape=escape(clip(note.what, 200)), user=fmt.user(note.actor), slack_date=fmt.slack_date(note.at)
                ),
                block_id=CardBlock.LAST_ACTION,
            )
        )
    elements = card_actions(lab)
    if elements:
        tail.append(actions(elements, block_id=CardBlock.ACTIONS))
    tail.append(
        context(
            _("profile `{escape}` · lab id `{value}` · updated {slack_date}").format(
                escape=escape(lab.profile), value=lab.uuid[:8], slack_date=fmt.slack_date(now)
            )
        )
    )
    return Message(text=fallback(fmt.lab_title(lab)), blocks=fit_blocks(blocks + tail, keep_last=len(tail)))


def card_actions(lab: LabView) -> list[dict[str, object]]:
    """The buttons that apply to the lab's state (none once it is destroyed)."""
    ref = encode(LabRef(lab_id=lab.id, name=lab.name))
    logs = button(_("Logs"), LabAction.LOGS, ref)
    destroy = destroy_button(lab)
    match lab.state:
        case "requested" | "provisioning":
            return [extend_menu(lab), logs, destroy]
        case "ready" | "expiring":
            return [
                extend_menu(lab),
                button(_("Access"), LabAction.ACCESS, ref, style="primary"),
                button(_("Health"), LabAction.HEALTH, ref),
                logs,
                destroy,
            ]
        case "failed" if lab.failed_step == "destroy":
            return [button(_("Retry destroy"), LabAction.RETRY, ref, style="primary"), logs]
        case "failed":
            return [button(_("Retry"), LabAction.RETRY, ref, style="primary"), logs, destroy]
        case "destroying":
            return [logs]
    return []


def extend_menu(lab: LabView) -> dict[str, object]:
    """The Extend menu: a choice of durations, each option carrying the lab and the duration."""
    options = [
        option(f"+{choice}", encode(ExtendChoice(lab_id=lab.id, name=lab.name, duration=choice)))
        for choice in EXTEND_CHOICES
    ]
    return static_select(_("Extend…"), LabAction.EXTEND, options)


def destroy_button(lab: LabView) -> dict[str, object]:
    """Destroy, behind Slack's own confirm dialog."""
    dialog = confirm(
        _("Destroy lab {name}?").format(name=lab.name),
        _(
            "Both VMs, the data volume and everything in the nested ZStack of `{name}` are deleted. This "
            "cannot be undone."
        ).format(name=lab.name),
        _("Destroy"),
    )
    return button(
        _("Destroy"),
        LabAction.DESTROY,
        encode(LabRef(lab_id=lab.id, name=lab.name)),
        style="danger",
        confirm_dialog=dialog,
    )


def _glance(lab: LabView, now: datetime) -> str:
    """``:white_check_mark: *Ready* · <@owner> · until <date>``: state, whose, how long."""
    parts = [f"{fmt.STATE_EMOJI.get(lab.state, '')} *{fmt.STATE_WORD.get(lab.state, lab.state)}*", fmt.user(lab.owner)]
    if lab.state == "destroyed":
        parts.append(_("destroyed {slack_date}").format(slack_date=fmt.slack_date(lab.destroyed_at or now)))
    else:
        extended = _(" (extended {times})").format(times=fmt.times(lab.ttl_extensions)) if lab.ttl_extensions else ""
        parts.append(fmt.countdown(lab.expires_at, now) + extended)
    if lab.state in ("ready", "expiring") and lab.health == "degraded":
        parts.append(_(":large_orange_circle: degraded"))
    return " · ".join(parts)


def _current(lab: LabView) -> list[Block]:
    """While building, the step under way (with its progress); once failed, where and why, said once."""
    total = len(lab.steps)
    if lab.state in ("requested", "provisioning"):
        step = lab.current_step
        done = sum(1 for s in lab.steps if s.state == "done")
        if step is None:
            text = (
                _("{done} of {total} steps done").format(done=done, total=total)
                if total
                else _("_Waiting for a worker to start the build…_")
            )
            return [section(text, block_id=CardBlock.STEPS)]
        text = _("Step {value} of {total}: *{escape}*").format(
            value=done + 1, total=total, escape=escape(clip(step.title, 80))
        )
        if step.attempt > 1:
            text += _(" _(attempt {attempt})_").format(attempt=step.attempt)
        value = fmt.percent(step.progress)
        if value is not None:
            text += f"\n`{fmt.progress_bar(value)}`"
        elif step.progress:
            text += " — " + escape(clip(step.progress, 120))
        return [section(text, block_id=CardBlock.STEPS)]
    if lab.state == "failed":
        failed = next((s for s in lab.steps if s.name == lab.failed_step), None)
        where = (
            _(" at *{escape}*").format(escape=escape(clip(failed.title, 80)))
            if failed
            else (_(" while destroying") if lab.failed_step == "destroy" else "")
        )
        error = escape(
            clip(
                (lab.error or _("no error recorded")).strip().splitlines()[0]
                if (lab.error or "").strip()
                else _("no error recorded"),
                500,
            )
        )
        return [section(_("Failed{where}: {error}").format(where=where, error=error), block_id=CardBlock.STEPS)]
    if lab.state in ("ready", "expiring"):
        facts = []
        if lab.vm1_public_ip:
            facts.append(_("VM1 `{vm1_public_ip}`").format(vm1_public_ip=lab.vm1_public_ip))
        if lab.vm2_ip:
            facts.append(_("VM2 `{vm2_ip}` (through VM1)").format(vm2_ip=lab.vm2_ip))
        if lab.health == "degraded" and lab.health_failing:
            failing = "; ".join(fmt.check_label(c) for c in lab.health_failing[:5])
            facts.append(_("failing: {escape}").format(escape=escape(clip(failing, 400))))
        return [section(" · ".join(facts), block_id=CardBlock.STEPS)] if facts else []
    return []


def _next_action(lab: LabView) -> str:
    """What someone looking at the card can do now (or what happens next)."""
    match lab.state:
        case "requested" | "provisioning":
            return _("Building; the build report lands in this thread. *Logs* shows each step so far.")
        case "ready" | "expiring":
            return _(
                "Ready. *Access* sends you the SSH commands and the ZStack login (only you see them); "
                "the build report is in this thread."
            )
        case "failed" if lab.failed_step == "destroy":
            return _("*Retry destroy* tries again (labbot also retries on its own); the error is in this thread.")
        case "failed":
            return _("*Retry* resumes from the failed step; its output is in this thread. *Destroy* gives up.")
        case "destroying":
            return _("Deleting both VMs and the data volume; this card says when they are gone.")
        case "destroyed":
            return _("Everything this lab made is gone from the lab platform.")
    return " "


def summary_lines(lab: LabView) -> list[str]:
    """What a ready lab is made of, one fact per line (addresses and resources, never credentials)."""
    lines = []
    if lab.vm1_public_ip:
        vpc = _(" · VPC {vm1_vpc_ip}").format(vm1_vpc_ip=lab.vm1_vpc_ip) if lab.vm1_vpc_ip else ""
        lines.append(
            _("*VM1* (jump host, iSCSI target): `{vm1_public_ip}`{vpc}").format(
                vm1_public_ip=lab.vm1_public_ip, vpc=vpc
            )
        )
    if lab.vm2_ip:
        lines.append(_("*VM2* (ZStack management node): `{vm2_ip}` (reached through VM1)").format(vm2_ip=lab.vm2_ip))
    if lab.iscsi_iqn:
        wwid = _(", wwid `{escape}`").format(escape=escape(clip(lab.iscsi_wwid, 80))) if lab.iscsi_wwid else ""
        lines.append(_("*iSCSI*: `{escape}`{wwid}").format(escape=escape(clip(lab.iscsi_iqn, 223)), wwid=wwid))
    for key, value in sorted(lab.summary.items(), key=lambda kv: (kv[0] not in _SUMMARY_LABELS, kv[0])):
        if _SECRET_KEY.search(key) or value in (None, "", [], {}):
            continue
        label = _SUMMARY_LABELS.get(key, key.replace("_", " ").capitalize())
        lines.append(f"*{escape(clip(label, 60))}*: {escape(clip(str(value), 200))}")
    return lines[:20]
