"""Renders command replies for the terminal (the console front end's Block Kit)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from bot.classroom import class_headline, class_row, progress_line, task_lines
from bot.text import lab_headline, ready_summary, step_line, time_left
from services.db import utcnow
from services.dispatch import Reply, ReplyKind


def render_reply(console: Console, reply: Reply) -> None:
    """Print one reply."""
    match reply.kind:
        case ReplyKind.LABS:
            if not reply.labs:
                console.print("no labs" + ("" if reply.data.get("all") else " of yours (`/lab list --all` for all)"))
                return
            table = Table("name", "state", "owner", "profile", "expires", "health")
            for lab in reply.labs:
                expires = "" if lab.state == "destroyed" else time_left(lab.expires_at)
                table.add_row(lab.name, lab.state, lab.owner, lab.profile, expires, lab.health)
            console.print(table)
        case ReplyKind.CHECKED:
            console.print(reply.text, markup=False)
            if reply.lab is not None and reply.lab.exercise is not None:
                for line in task_lines(reply.lab.exercise):
                    console.print(f"  {line}", markup=False, highlight=False)
        case ReplyKind.CLASS | ReplyKind.CONFIRM_CLASS_DESTROY:
            if reply.text:
                suffix = " Repeat with --yes to confirm." if reply.kind == ReplyKind.CONFIRM_CLASS_DESTROY else ""
                console.print(reply.text + suffix, markup=False)
            if reply.klass is not None:
                console.print(class_headline(reply.klass), markup=False, highlight=False)
                table = Table("lab", "student", "state", "progress", "health", "time left")
                now = utcnow()
                for lab in reply.klass.labs:
                    table.add_row(*class_row(lab, now))
                console.print(table)
        case (ReplyKind.LAB | ReplyKind.EXTENDED | ReplyKind.RETRYING | ReplyKind.DESTROYING | ReplyKind.CREATED
              | ReplyKind.SOLVING | ReplyKind.CLAIMED):
            if reply.text:
                console.print(reply.text, markup=False)
            if reply.lab is not None:
                console.print(lab_headline(reply.lab), markup=False)
                for step in reply.lab.steps:
                    console.print(f"  {step_line(step)}", markup=False, highlight=False)
                if reply.lab.exercise is not None:
                    console.print(f"  {progress_line(reply.lab.exercise)}", markup=False, highlight=False)
                    for line in task_lines(reply.lab.exercise, hints=False):
                        console.print(f"    {line}", markup=False, highlight=False)
                if reply.lab.state == "ready":
                    for fact in ready_summary(reply.lab):
                        console.print(f"  {fact}", markup=False)
                if reply.lab.state == "failed":
                    console.print(f"  failed at {reply.lab.failed_step}: {reply.lab.error}", style="red", markup=False)
        case ReplyKind.LOGS:
            console.print(reply.text, markup=False)
            for step in reply.steps:
                console.print(f"── {step_line(step)}", markup=False, highlight=False)
                if step.output_tail:
                    console.print(step.output_tail.rstrip(), markup=False, highlight=False)
        case ReplyKind.ACCESS:
            access = reply.data["access"]
            for line in access.lines(reveal=True):
                console.print(line, markup=False, highlight=False)
        case ReplyKind.HEALTH:
            report = reply.data["report"]
            console.print(f"{report.lab.name}: {'healthy' if report.healthy else 'DEGRADED'}",
                          style="green" if report.healthy else "red")
            for check in report.checks:
                mark = "✓" if check.ok else "✗"
                console.print(f"  {mark} {check.name} ({check.latency_ms} ms) {check.detail}", markup=False)
        case ReplyKind.CONFIRM_DESTROY:
            console.print(f"{reply.text} Repeat with --yes to confirm.", markup=False)
        case _:
            console.print(reply.text, markup=False, highlight=False)
