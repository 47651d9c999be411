"""The console's Notifier: one line per thing that happened, progress lines throttled per lab."""

from __future__ import annotations

import time

from rich.console import Console
from rich.text import Text

from bot.classroom import progress_line
from bot.text import lab_headline, printable, ready_summary, step_line
from services.labs.notifier import Notice, NoticeKind

_STYLE = {
    NoticeKind.STEP_FAILED: "red",
    NoticeKind.FAILED: "bold red",
    NoticeKind.READY: "bold green",
    NoticeKind.DESTROYED: "bold",
    NoticeKind.DESTROY_FAILED: "bold red",
    NoticeKind.HEALTH_CHANGED: "yellow",
    NoticeKind.EXPIRY_WARNING: "yellow",
    NoticeKind.ORPHANS_FOUND: "yellow",
    NoticeKind.EXERCISE_COMPLETE: "bold green",
}


class ConsoleNotifier:
    """Prints notices as they come, like the Slack card's thread would show them."""

    def __init__(self, console: Console, progress_interval: float = 1.0) -> None:
        self.console = console
        self.progress_interval = progress_interval
        self._last_progress: dict[tuple[str, str], tuple[float, str]] = {}

    async def notify(self, notice: Notice) -> None:
        """Print one notice (progress at most once per ``progress_interval`` per step)."""
        line = self._line(notice)
        if line is None:
            return
        style = _STYLE.get(notice.kind, "")
        # Text objects are printed as they are: no markup, emoji codes or highlighting is read from the text,
        # part of which comes from a lab VM (progress, errors) and is made printable first.
        self.console.print(Text.assemble((f"[{printable(notice.lab.name)}]", "dim"), " ", printable(line), style=style))
        if notice.kind == NoticeKind.READY:
            for fact in ready_summary(notice.lab):
                self.console.print(Text(f"    {printable(fact)}"))
        if notice.kind == NoticeKind.ORPHANS_FOUND:
            # One line per resource, as the admins' Slack message lists them: label, then uuid, why and fate.
            for label, detail in notice.details.items():
                self.console.print(Text(printable(f"    {label}: {detail}")))

    def _line(self, notice: Notice) -> str | None:
        lab, step = notice.lab, notice.step
        by = f" (by {notice.actor})" if notice.actor and notice.actor != "labbot" else ""
        match notice.kind:
            case NoticeKind.STEP_PROGRESS if step is not None:
                key = (lab.name, step.name)
                now = time.monotonic()
                last = self._last_progress.get(key)
                text = step.progress or notice.text
                if last and (now - last[0] < self.progress_interval or last[1] == text):
                    return None
                self._last_progress[key] = (now, text)
                return f"  … {step.title}: {text}"
            case NoticeKind.STEP_STARTED | NoticeKind.STEP_FINISHED | NoticeKind.STEP_FAILED if step is not None:
                return f"  {step_line(step)}"
            case NoticeKind.STEP_NOTE if step is not None:
                return f"  … {step.title}: {notice.text}"
            case NoticeKind.CREATED:
                return f"lab requested{by}: profile {lab.profile}, expires {lab.expires_at:%Y-%m-%d %H:%M} UTC"
            case NoticeKind.ORPHANS_FOUND:
                # A platform-wide notice: its "lab" is a stand-in, so no lab headline.
                return f"lab platform: {notice.text} (`labbot sweep --only orphans --dry-run` lists them again)"
            case NoticeKind.EXERCISE_CHECKED | NoticeKind.EXERCISE_COMPLETE | NoticeKind.EXERCISE_SOLVED \
                    if lab.exercise is not None:
                done = " — every task done: exercise complete" if notice.kind == NoticeKind.EXERCISE_COMPLETE else ""
                return f"{progress_line(lab.exercise)}{by}{done}"
            case NoticeKind.FAILED:
                return f"FAILED at {lab.failed_step}: {lab.error} — `/lab retry {lab.name}` to try again"
            case _:
                text = f" — {notice.text}" if notice.text else ""
                return f"{lab_headline(lab)}{by}{text}"
