"""Renders command replies for the terminal (the console front end's Block Kit).

Every text is printed as a ``rich.text.Text`` of ``printable`` text: rich reads no markup, emoji codes or
highlighting from it, and no control character from a lab VM's output reaches the terminal.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.blocks.format import state_word
from bot.classroom import class_headline, class_row, pool_rows, progress_line, task_lines
from bot.text import lab_headline, printable, ready_summary, step_line, time_left
from services.db import utcnow
from services.dispatch import Reply, ReplyKind
from services.i18n import _


def say(console: Console, text: str, style: str = "") -> None:
    """Print ``text`` literally (newlines kept, controls shown as escapes) in ``style``."""
    console.print(Text(printable(text, multiline=True), style=style))


def render_reply(console: Console, reply: Reply) -> None:
    """Print one reply."""
    match reply.kind:
        case ReplyKind.LABS:
            if not reply.labs:
                say(
                    console,
                    _("no labs") + ("" if reply.data.get("all") else _(" of yours (`/lab list --all` for all)")),
                )
                return
            table = Table(_("name"), _("state"), _("owner"), _("profile"), _("expires"), _("health"))
            for lab in reply.labs:
                expires = "" if lab.state == "destroyed" else time_left(lab.expires_at)
                table.add_row(
                    *(
                        Text(printable(cell))
                        for cell in (lab.name, state_word(lab.state), lab.owner, lab.profile, expires, lab.health)
                    )
                )
            console.print(table)
        case ReplyKind.POOL:
            say(console, reply.text)
            if reply.data.get("pools"):
                table = Table(_("profile"), _("target"), _("ready"), _("building"), _("failed"))
                for row in pool_rows(reply.data["pools"]):
                    table.add_row(*(Text(cell) for cell in row))
                console.print(table)
        case ReplyKind.CHECKED:
            say(console, reply.text)
            if reply.lab is not None and reply.lab.exercise is not None:
                for line in task_lines(reply.lab.exercise):
                    say(console, f"  {line}")
        case ReplyKind.CLASS | ReplyKind.CONFIRM_CLASS_DESTROY:
            if reply.text:
                confirm = _(" Repeat with --yes to confirm.") if reply.kind == ReplyKind.CONFIRM_CLASS_DESTROY else ""
                say(console, reply.text + confirm)
            if reply.klass is not None:
                say(console, class_headline(reply.klass))
                table = Table(_("lab"), _("student"), _("state"), _("progress"), _("health"), _("time left"))
                now = utcnow()
                for lab in reply.klass.labs:
                    table.add_row(*(Text(printable(cell)) for cell in class_row(lab, now)))
                console.print(table)
        case (
            ReplyKind.LAB
            | ReplyKind.EXTENDED
            | ReplyKind.RETRYING
            | ReplyKind.DESTROYING
            | ReplyKind.CREATED
            | ReplyKind.SOLVING
            | ReplyKind.CLAIMED
        ):
            if reply.text:
                say(console, reply.text)
            if reply.lab is not None:
                say(console, lab_headline(reply.lab))
                for step in reply.lab.steps:
                    say(console, f"  {step_line(step)}")
                if reply.lab.exercise is not None:
                    say(console, f"  {progress_line(reply.lab.exercise)}")
                    for line in task_lines(reply.lab.exercise, hints=False):
                        say(console, f"    {line}")
                if reply.lab.state == "ready":
                    for fact in ready_summary(reply.lab):
                        say(console, f"  {fact}")
                if reply.lab.state == "failed":
                    say(
                        console,
                        _("  failed at {failed_step}: {error}").format(
                            failed_step=reply.lab.failed_step, error=reply.lab.error
                        ),
                        "red",
                    )
        case ReplyKind.LOGS:
            say(console, reply.text)
            for step in reply.steps:
                say(console, f"── {step_line(step)}")
                if step.output_tail:
                    say(console, step.output_tail.rstrip())
        case ReplyKind.ACCESS:
            access = reply.data["access"]
            for line in access.lines(reveal=True):
                say(console, line)
        case ReplyKind.HEALTH:
            report = reply.data["report"]
            say(
                console,
                f"{report.lab.name}: {'healthy' if report.healthy else 'DEGRADED'}",
                "green" if report.healthy else "red",
            )
            for check in report.checks:
                mark = "✓" if check.ok else "✗"
                say(
                    console,
                    _("  {mark} {name} ({latency_ms} ms) {detail}").format(
                        mark=mark, name=check.name, latency_ms=check.latency_ms, detail=check.detail
                    ),
                )
        case ReplyKind.PICTURE | ReplyKind.CAPTURED:
            pass  # the notice printed it, as the lab's thread shows it in Slack
        case ReplyKind.CONFIRM_DESTROY:
            say(console, _("{text} Repeat with --yes to confirm.").format(text=reply.text))
        case _:
            say(console, reply.text)
