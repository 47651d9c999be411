"""The lab card: one message per lab in its channel, rebuilt from a LabView and updated in place.

The card shows who owns the lab, its state, each step with status and duration, the running step's progress,
the TTL countdown, the ready summary (never credentials: those go only to the owner, privately), and the
buttons that apply to the lab's state, so a click that changes the state also removes the buttons that no
longer apply.
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
    fields_section,
    fit_blocks,
    header,
    option,
    section,
    static_select,
)
from services.labs.views import LabView

log = logging.getLogger(__name__)

EXTEND_CHOICES = ("1h", "4h", "1d")
LIVE_UNTIL_DESTROYED = ("requested", "provisioning", "ready", "expiring", "failed")
# Keys of the ready summary that must never be shown in a channel, whatever the pipeline puts there.
_SECRET_KEY = re.compile(r"pass|secret|token|private|credential|key$", re.IGNORECASE)
_SUMMARY_LABELS = {
    "primary_storage": "SharedBlock storage",
    "nested_vm": "Nested VM",
    "ui": "ZStack UI",
    "zone": "Zone",
    "cluster": "Cluster",
    "host": "KVM host",
}
MAX_STEP_LINES = 40


@dataclass(frozen=True)
class CardNote:
    """Who last did something to the lab from Slack, and when: shown at the foot of the card."""

    actor: str
    what: str
    at: datetime


def build_lab_card(lab: LabView, *, now: datetime, note: CardNote | None = None) -> Message:
    """The whole card for ``lab`` as it is at ``now`` (always within Slack's message limits)."""
    blocks: list[Block] = [header(f"{fmt.STATE_EMOJI.get(lab.state, '')} Lab {lab.name}", CardBlock.HEADER)]
    blocks.append(fields_section(_fields(lab, now), block_id=CardBlock.FIELDS))
    blocks.append(section(_steps_text(lab), block_id=CardBlock.STEPS))
    blocks.extend(_progress(lab))
    if lab.exercise is not None and lab.state in ("ready", "expiring", "provisioning"):
        blocks.extend(exercise_blocks(lab.exercise))
    blocks.extend(_outcome(lab))
    tail: list[Block] = []
    if note is not None:
        tail.append(context(f"{escape(clip(note.what, 200))} by {fmt.user(note.actor)} · {fmt.slack_date(note.at)}",
                            block_id=CardBlock.LAST_ACTION))
    elements = card_actions(lab)
    if elements:
        tail.append(actions(elements, block_id=CardBlock.ACTIONS))
    tail.append(context(f"profile `{escape(lab.profile)}` · lab id `{lab.uuid[:8]}` · updated {fmt.slack_date(now)}"))
    return Message(text=fallback(fmt.lab_title(lab)), blocks=fit_blocks(blocks + tail, keep_last=len(tail)))


def card_actions(lab: LabView) -> list[dict[str, object]]:
    """The buttons that apply to the lab's state (none once it is destroyed)."""
    ref = encode(LabRef(lab_id=lab.id, name=lab.name))
    logs = button("Logs", LabAction.LOGS, ref)
    destroy = destroy_button(lab)
    match lab.state:
        case "requested" | "provisioning":
            return [extend_menu(lab), logs, destroy]
        case "ready" | "expiring":
            return [extend_menu(lab), button("Access", LabAction.ACCESS, ref, style="primary"),
                    button("Health", LabAction.HEALTH, ref), logs, destroy]
        case "failed" if lab.failed_step == "destroy":
            return [button("Retry destroy", LabAction.RETRY, ref, style="primary"), logs]
        case "failed":
            return [button("Retry", LabAction.RETRY, ref, style="primary"), logs, destroy]
        case "destroying":
            return [logs]
    return []


def extend_menu(lab: LabView) -> dict[str, object]:
    """The Extend menu: a choice of durations, each option carrying the lab and the duration."""
    options = [
        option(f"+{choice}", encode(ExtendChoice(lab_id=lab.id, name=lab.name, duration=choice)))
        for choice in EXTEND_CHOICES
    ]
    return static_select("Extend…", LabAction.EXTEND, options)


def destroy_button(lab: LabView) -> dict[str, object]:
    """Destroy, behind Slack's own confirm dialog."""
    dialog = confirm(
        f"Destroy lab {lab.name}?",
        f"Both VMs, the data volume and everything in the nested ZStack of `{lab.name}` are deleted. "
        "This cannot be undone.",
        "Destroy",
    )
    return button("Destroy", LabAction.DESTROY, encode(LabRef(lab_id=lab.id, name=lab.name)), style="danger",
                  confirm_dialog=dialog)


def _fields(lab: LabView, now: datetime) -> list[str]:
    fields = [f"*Owner*\n{fmt.user(lab.owner)}", f"*State*\n{fmt.state_label(lab.state)}",
              f"*Profile*\n`{escape(lab.profile)}`"]
    if lab.state == "destroyed":
        when = lab.destroyed_at or now
        fields.append(f"*Destroyed*\n{fmt.slack_date(when)}")
    else:
        extended = f" · extended {lab.ttl_extensions} times" if lab.ttl_extensions else ""
        fields.append(f"*Expires*\n{fmt.countdown(lab.expires_at, now)}{extended}")
    if lab.state in ("ready", "expiring") and lab.health != "unknown":
        mark = ":large_green_circle:" if lab.health == "ok" else ":large_orange_circle:"
        fields.append(f"*Health*\n{mark} {escape(lab.health)}")
    return fields


def _steps_text(lab: LabView) -> str:
    if not lab.steps:
        return "*Steps*\n_Waiting for a worker to start the build…_"
    done = sum(1 for s in lab.steps if s.state == "done")
    lines = [fmt.step_line(s) for s in lab.steps[:MAX_STEP_LINES]]
    if len(lab.steps) > MAX_STEP_LINES:
        lines.append(f"_… and {len(lab.steps) - MAX_STEP_LINES} more steps_")
    text = f"*Steps* ({done}/{len(lab.steps)} done)\n" + "\n".join(lines)
    if len(text) > 2900:
        # Keep each line whole: drop lines from the end of the list rather than cutting one in half.
        kept: list[str] = []
        budget = 2900 - 60
        for line in lines:
            if budget - len(line) - 1 < 0:
                break
            kept.append(line)
            budget -= len(line) + 1
        text = f"*Steps* ({done}/{len(lab.steps)} done)\n" + "\n".join(kept)
        text += f"\n_… {len(lines) - len(kept)} more (see Logs)_"
    return text


def _progress(lab: LabView) -> list[Block]:
    step = lab.current_step
    if step is None or lab.state not in ("requested", "provisioning"):
        return []
    value = fmt.percent(step.progress)
    if value is None:
        return []
    return [context(f"*{escape(clip(step.title, 80))}*  `{fmt.progress_bar(value)}`")]


def _outcome(lab: LabView) -> list[Block]:
    if lab.state in ("ready", "expiring"):
        lines = summary_lines(lab)
        text = "*The lab is ready.*"
        if lines:
            text += "\n" + "\n".join(f"• {line}" for line in lines)
        text += "\n_Use *Access* for the SSH commands and the ZStack login (sent only to you)._"
        blocks = [section(text)]
        if lab.health == "degraded" and lab.health_failing:
            failing = ", ".join(escape(c) for c in lab.health_failing[:10])
            blocks.append(context(f":warning: Failing health checks: {clip(failing, 500)}"))
        return blocks
    if lab.state == "failed":
        where = f" at step `{escape(lab.failed_step)}`" if lab.failed_step else ""
        error = escape(clip(lab.error or "no error recorded", 1500))
        return [section(f":x: *Failed{where}*: {error}\n_The output tail is in this card's thread; "
                        "*Retry* resumes from the failed step._")]
    return []


def summary_lines(lab: LabView) -> list[str]:
    """What a ready lab is made of, one fact per line (addresses and resources, never credentials)."""
    lines = []
    if lab.vm1_public_ip:
        vpc = f" · VPC {lab.vm1_vpc_ip}" if lab.vm1_vpc_ip else ""
        lines.append(f"*VM1* (jump host, iSCSI target): `{lab.vm1_public_ip}`{vpc}")
    if lab.vm2_ip:
        lines.append(f"*VM2* (ZStack management node): `{lab.vm2_ip}` (reached through VM1)")
    if lab.iscsi_iqn:
        wwid = f", wwid `{escape(clip(lab.iscsi_wwid, 80))}`" if lab.iscsi_wwid else ""
        lines.append(f"*iSCSI*: `{escape(clip(lab.iscsi_iqn, 223))}`{wwid}")
    for key, value in sorted(lab.summary.items(), key=lambda kv: (kv[0] not in _SUMMARY_LABELS, kv[0])):
        if _SECRET_KEY.search(key) or value in (None, "", [], {}):
            continue
        label = _SUMMARY_LABELS.get(key, key.replace("_", " ").capitalize())
        lines.append(f"*{escape(clip(label, 60))}*: {escape(clip(str(value), 200))}")
    return lines[:20]
