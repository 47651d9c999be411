"""Plain words for lab states and steps, shared by the console and Slack renderers (pure functions)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from bot.blocks.format import duration, state_word
from services.db import utcnow
from services.i18n import _
from services.labs.views import LabView, StepView

STATE_EMOJI = {
    "requested": "🕓",
    "provisioning": "🔧",
    "ready": "✅",
    "expiring": "⏳",
    "destroying": "🧹",
    "destroyed": "🗑️",
    "failed": "❌",
}
STEP_MARK = {"pending": "·", "running": "▶", "done": "✓", "failed": "✗"}

# What a terminal acts on instead of showing: C0 controls (ESC starts colour, title and cursor sequences; CR and
# BS overwrite what was printed), DEL, C1 controls (0x9b is a one-byte CSI), and the bidirectional overrides and
# isolates that make text read differently from what it is. Newline and tab are allowed where text may span lines.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNPRINTABLE_MULTILINE = re.compile(f"[{_CONTROLS}]")
_UNPRINTABLE = re.compile(f"[{_CONTROLS}\n\t]")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\r``): safe for a terminal or a log.

    Text from a lab VM (progress, errors, step output) reaches the console and the logs; its owner has root
    and may put terminal escape sequences in it. With ``multiline`` newlines and tabs are kept as they are.
    """
    return (_UNPRINTABLE_MULTILINE if multiline else _UNPRINTABLE).sub(_visible, text)


def time_left(expires_at: datetime, now: datetime | None = None) -> str:
    """How long until expiry, or how long ago it was."""
    delta = expires_at - (now or utcnow())
    if delta < timedelta(0):
        return _("expired {duration} ago").format(duration=duration(-delta.total_seconds()))
    return _("{duration} left").format(duration=duration(delta.total_seconds()))


def step_line(step: StepView) -> str:
    """One line per step: mark, title, duration, progress or error."""
    parts = [STEP_MARK.get(step.state, "?"), step.title]
    if step.duration_seconds is not None and step.state != "pending":
        parts.append(f"({duration(step.duration_seconds)})")
    if step.state == "running" and step.progress:
        parts.append(f"— {step.progress}")
    if step.state == "failed" and step.error:
        parts.append(f"— {step.error}")
    if step.attempt > 1:
        parts.append(_("[attempt {attempt}]").format(attempt=step.attempt))
    return " ".join(parts)


def lab_headline(lab: LabView) -> str:
    """``✅ demo — ready · profile sandbox · owner U1 · 3h 59m left``."""
    bits = [
        f"{STATE_EMOJI.get(lab.state, '')} {lab.name} — {state_word(lab.state)}",
        _("profile {profile}").format(profile=lab.profile),
        _("owner {owner}").format(owner=lab.owner),
    ]
    if lab.state != "destroyed":
        bits.append(time_left(lab.expires_at))
    if lab.state == "ready" and lab.health != "unknown":
        bits.append(_("health {health}").format(health=lab.health))
    return " · ".join(bits)


def ready_summary(lab: LabView) -> list[str]:
    """What a ready lab is made of, one fact per line."""
    summary = lab.summary or {}
    lines = []
    if lab.vm1_public_ip:
        lines.append(
            _("VM1 (jump host + iSCSI target): {vm1_public_ip} / VPC {vm1_vpc_ip}").format(
                vm1_public_ip=lab.vm1_public_ip, vm1_vpc_ip=lab.vm1_vpc_ip
            )
        )
    if lab.vm2_ip:
        lines.append(_("VM2 (ZStack management node): {vm2_ip} (through VM1)").format(vm2_ip=lab.vm2_ip))
    if lab.iscsi_iqn:
        lines.append(
            _("iSCSI: {iscsi_iqn} LUN 1, wwid {iscsi_wwid}").format(iscsi_iqn=lab.iscsi_iqn, iscsi_wwid=lab.iscsi_wwid)
        )
    for key, label in (
        ("primary_storage", _("SharedBlock storage")),
        ("nested_vm", _("Nested VM")),
        ("ui", _("ZStack UI")),
    ):
        if summary.get(key):
            lines.append(f"{label}: {summary[key]}")
    return lines
