"""Private details: how to reach a lab (addresses, SSH commands, ZStack login) and a health report.

Access details carry credentials, so ``build_access`` is only ever used for ephemeral replies and DMs; it shows
the passwords on purpose, and nothing else in labbot does.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.blocks import format as fmt
from bot.blocks.kit import Message, clip, context, escape, fallback, fit_blocks, section
from services.i18n import _
from services.labs.access import AccessDetails
from services.labs.build.health import HealthReport

log = logging.getLogger(__name__)


def build_access(access: AccessDetails) -> Message:
    """How to reach VM1, VM2 and the nested ZStack UI, credentials included (private messages only)."""
    lab = access.lab
    head = _(
        ":key: *How to reach lab `{escape}`* (only you can see this)\nVM1 (jump host): `{escape2}` · "
        "VM2: `{escape3}` (only through VM1)"
    ).format(escape=escape(lab.name), escape2=escape(lab.vm1_public_ip or "?"), escape3=escape(lab.vm2_ip or "?"))
    commands = "\n".join(
        f"*{escape(label)}*\n```{escape(clip(text, 400))}```" for label, text in access.commands.lines()
    )
    credentials = _("*root password* (VM1 and VM2): `{escape}`\n*ZStack UI login*: `{escape2}` / `{escape3}`").format(
        escape=escape(access.root_password), escape2=escape(access.zstack_user), escape3=escape(access.zstack_password)
    )
    blocks = [
        section(head),
        section(commands),
        section(credentials),
        context(_("Do not share this message: it holds the lab's passwords.")),
    ]
    return Message(text=fallback(_("Access details for lab {name}").format(name=lab.name)), blocks=fit_blocks(blocks))


def build_health(report: HealthReport, *, now: datetime) -> Message:
    """Each health check with its latency, and the verdict."""
    lab = report.lab
    verdict = _(":large_green_circle: healthy") if report.healthy else _(":large_orange_circle: *degraded*")
    lines = []
    for check in list(report.checks)[:40]:
        mark = ":white_check_mark:" if check.ok else ":x:"
        latency = f" `{check.latency_ms:.0f} ms`" if check.latency_ms is not None else ""
        detail = f" — {escape(clip(check.detail, 200))}" if check.detail else ""
        lines.append(f"{mark} {escape(clip(fmt.check_label(check.name), 80))}{latency}{detail}")
    body = _("*Health of lab `{escape}`*: {verdict}\n").format(escape=escape(lab.name), verdict=verdict) + (
        "\n".join(lines) or _("_no checks ran_")
    )
    blocks = [section(body), context(_("checked {slack_date}").format(slack_date=fmt.slack_date(now)))]
    return Message(
        text=fallback(
            _("Lab {name}: {value}").format(name=lab.name, value="healthy" if report.healthy else "degraded")
        ),
        blocks=fit_blocks(blocks),
    )
