"""Private details: how to reach a lab (addresses, SSH commands, ZStack login) and a health report.

Access details carry credentials, so ``build_access`` is only ever used for ephemeral replies and DMs; it reveals
``SecretStr`` values on purpose, and nothing else in labbot does. The access object is read field by field
(dataclass or pydantic model), so new fields the service adds show up without a change here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, SecretStr

from bot.blocks import format as fmt
from bot.blocks.kit import Message, clip, context, escape, fallback, fit_blocks, section
from services.labs.views import LabView

log = logging.getLogger(__name__)

_COMMAND_HINTS = ("ssh", "command", "tunnel", "scp")


class HealthCheckLike(Protocol):
    """One health check result as the service reports it."""

    name: str
    ok: bool
    latency_ms: int | float | None
    detail: str


class HealthReportLike(Protocol):
    """A lab's health report: the lab, each check, and the verdict."""

    lab: LabView
    checks: Sequence[HealthCheckLike]
    healthy: bool


class AccessLike(Protocol):
    """Access details: the lab plus addresses, commands, URL and credentials (read field by field)."""

    lab: LabView


def build_access(access: AccessLike) -> Message:
    """How to reach VM1, VM2 and the nested ZStack UI, credentials included (private messages only)."""
    lab = access.lab
    commands: list[str] = []
    facts: list[str] = []
    for name, value in _public_fields(access):
        if name == "lab" or value in (None, "", [], {}):
            continue
        label = name.replace("_", " ").capitalize()
        if isinstance(value, SecretStr):
            facts.append(f"*{escape(label)}*: `{escape(value.get_secret_value())}`")
        elif isinstance(value, str) and any(hint in name for hint in _COMMAND_HINTS):
            commands.append(f"*{escape(label)}*\n```{escape(clip(value, 900))}```")
        elif isinstance(value, str | int | float):
            facts.append(f"*{escape(label)}*: `{escape(clip(str(value), 300))}`")
    blocks = [section(f":key: *How to reach lab `{escape(lab.name)}`* (only you can see this)")]
    if facts:
        blocks.append(section("\n".join(facts)))
    blocks.extend(section(cmd) for cmd in commands)
    blocks.append(context("VM2 is reachable only through VM1 (the jump host). Do not share this message."))
    return Message(text=fallback(f"Access details for lab {lab.name}"), blocks=fit_blocks(blocks))


def build_health(report: HealthReportLike, *, now: datetime) -> Message:
    """Each health check with its latency, and the verdict."""
    lab = report.lab
    verdict = ":large_green_circle: healthy" if report.healthy else ":large_orange_circle: *degraded*"
    lines = []
    for check in list(report.checks)[:40]:
        mark = ":white_check_mark:" if check.ok else ":x:"
        latency = f" `{check.latency_ms:.0f} ms`" if check.latency_ms is not None else ""
        detail = f" — {escape(clip(check.detail, 200))}" if check.detail else ""
        lines.append(f"{mark} {escape(clip(check.name, 60))}{latency}{detail}")
    body = f"*Health of lab `{escape(lab.name)}`*: {verdict}\n" + ("\n".join(lines) or "_no checks ran_")
    blocks = [section(body), context(f"checked {fmt.slack_date(now)}")]
    return Message(text=fallback(f"Lab {lab.name}: {'healthy' if report.healthy else 'degraded'}"),
                   blocks=fit_blocks(blocks))


def _public_fields(obj: object) -> Iterator[tuple[str, Any]]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for item in dataclasses.fields(obj):
            if not item.name.startswith("_"):
                yield item.name, getattr(obj, item.name)
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield name, getattr(obj, name)
