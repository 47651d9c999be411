"""Private details: how to reach a lab (addresses, SSH commands, ZStack login) and a health report.

Access details carry credentials, so ``build_access`` is only ever used for ephemeral replies and DMs; it shows
the passwords on purpose, and nothing else in labbot does.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.blocks import format as fmt
from bot.blocks.kit import Message, clip, context, escape, fallback, fit_blocks, section
from services.labs.access import AccessDetails
from services.labs.build.health import HealthReport

log = logging.getLogger(__name__)


def build_access(access: AccessDetails) -> Message:
    """How to reach VM1, VM2 and the nested ZStack UI, credentials included (private messages only)."""
    lab = access.lab
    head = (f":key: *How to reach lab `{escape(lab.name)}`* (only you can see this)\n"
            f"VM1 (jump host): `{escape(lab.vm1_public_ip or '?')}` · VM2: `{escape(lab.vm2_ip or '?')}` "
            "(only through VM1)")
    commands = "\n".join(f"*{escape(label)}*\n```{escape(clip(text, 400))}```"
                         for label, text in access.commands.lines())
    credentials = (f"*root password* (VM1 and VM2): `{escape(access.root_password)}`\n"
                   f"*ZStack UI login*: `{escape(access.zstack_user)}` / `{escape(access.zstack_password)}`")
    blocks = [section(head), section(commands), section(credentials),
              context("Do not share this message: it holds the lab's passwords.")]
    return Message(text=fallback(f"Access details for lab {lab.name}"), blocks=fit_blocks(blocks))


def build_health(report: HealthReport, *, now: datetime) -> Message:
    """Each health check with its latency, and the verdict."""
    lab = report.lab
    verdict = ":large_green_circle: healthy" if report.healthy else ":large_orange_circle: *degraded*"
    lines = []
    for check in list(report.checks)[:40]:
        mark = ":white_check_mark:" if check.ok else ":x:"
        latency = f" `{check.latency_ms:.0f} ms`" if check.latency_ms is not None else ""
        detail = f" — {escape(clip(check.detail, 200))}" if check.detail else ""
        lines.append(f"{mark} {escape(clip(fmt.check_label(check.name), 80))}{latency}{detail}")
    body = f"*Health of lab `{escape(lab.name)}`*: {verdict}\n" + ("\n".join(lines) or "_no checks ran_")
    blocks = [section(body), context(f"checked {fmt.slack_date(now)}")]
    return Message(text=fallback(f"Lab {lab.name}: {'healthy' if report.healthy else 'degraded'}"),
                   blocks=fit_blocks(blocks))
