"""The console's Notifier: one line per thing that happened, progress lines throttled per lab."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.text import Text

from bot.capture_text import summary_lines
from bot.classroom import progress_line
from bot.picture import TEXT as PICTURE_TEXT
from bot.picture import PictureUnavailable, render_png, text_tree
from bot.text import lab_headline, printable, ready_summary, step_line
from services.i18n import N_, Texts, _
from services.labs.notifier import Notice, NoticeKind, OrphanReport
from services.labs.picture import LabPicture

log = logging.getLogger(__name__)

# Every user-facing string of this module's files output (one place, for the message catalogue).
TEXT = Texts({
    "picture_file": N_("picture of lab {lab} written to {path}"),
    "capture_file": N_("capture of lab {lab} written to {path}"),
})

_STYLE = {
    NoticeKind.STEP_FAILED: "red",
    NoticeKind.FAILED: "bold red",
    NoticeKind.READY: "bold green",
    NoticeKind.DESTROYED: "bold",
    NoticeKind.DESTROY_FAILED: "bold red",
    NoticeKind.HEALTH_CHANGED: "yellow",
    NoticeKind.EXPIRY_WARNING: "yellow",
    NoticeKind.EXERCISE_COMPLETE: "bold green",
}


class ConsoleNotifier:
    """Prints notices as they come, like the Slack card's thread would show them."""

    def __init__(self, console: Console, progress_interval: float = 1.0, *, files_dir: Path | None = None,
                 pictures: Callable[[int], Awaitable[LabPicture]] | None = None) -> None:
        """``files_dir``: where pictures and captures are written (the console's thread); ``pictures``: the
        service's ``picture_of``, for the picture shown when a lab is ready."""
        self.console = console
        self.progress_interval = progress_interval
        self.files_dir = files_dir or Path("labbot-files")
        self.pictures = pictures
        self._last_progress: dict[tuple[str, str], tuple[float, str]] = {}

    async def report_orphans(self, report: OrphanReport) -> None:
        """The sweep's report, then one line per resource as the admins' Slack message lists them: label, then
        uuid, why and fate."""
        head = _("lab platform: {text} (`labbot sweep --only orphans --dry-run` lists them again)").format(
            text=report.text)
        self.console.print(Text(printable(f"[lab-platform] {head}"), style="yellow"))
        for label, detail in report.resources.items():
            self.console.print(Text(printable(f"    {label}: {detail}")))

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
            if self.pictures is not None:
                await self._picture(await self.pictures(notice.lab.id))
        if notice.kind == NoticeKind.PICTURE:
            await self._picture(notice.details["picture"])  # type: ignore[arg-type]
        if notice.kind == NoticeKind.CAPTURED:
            report = notice.details["capture"]
            for text in summary_lines(report):  # type: ignore[arg-type]
                self.console.print(Text(f"    {printable(text)}"))
            path = self.files_dir / report.filename  # type: ignore[attr-defined]
            await asyncio.to_thread(self._copy, report.path, path)  # type: ignore[attr-defined]
            self.console.print(Text(f"    {TEXT['capture_file'].format(lab=notice.lab.name, path=path)}"))

    async def _picture(self, picture: LabPicture) -> None:
        """Write the PNG (when Graphviz can draw it) and print the text tree."""
        try:
            png = await asyncio.to_thread(render_png, picture)
        except PictureUnavailable as err:
            self.console.print(Text(f"    {PICTURE_TEXT['no_graphviz'].format(reason=err)}", style="yellow"))
        else:
            path = self.files_dir / f"{picture.lab}-picture.png"
            await asyncio.to_thread(self._write, path, png)
            self.console.print(Text(f"    {TEXT['picture_file'].format(lab=picture.lab, path=path)}"))
        for text in text_tree(picture):
            self.console.print(Text(f"    {printable(text)}"))

    def _write(self, path: Path, data: bytes) -> None:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def _copy(self, source: Path, target: Path) -> None:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        target.chmod(0o600)  # a capture holds the lab's traffic: as private as labbot's own copy

    def _line(self, notice: Notice) -> str | None:
        lab, step = notice.lab, notice.step
        by = _(" (by {actor})").format(actor=notice.actor) if notice.actor and notice.actor != "labbot" else ""
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
                return _("lab requested{by}: profile {profile}, expires {expires_at:%Y-%m-%d %H:%M} UTC").format(
                    by=by, profile=lab.profile, expires_at=lab.expires_at
                )
            case NoticeKind.EXERCISE_CHECKED | NoticeKind.EXERCISE_COMPLETE | NoticeKind.EXERCISE_SOLVED if (
                lab.exercise is not None
            ):
                done = _(" — every task done: exercise complete") if notice.kind == NoticeKind.EXERCISE_COMPLETE else ""
                return f"{progress_line(lab.exercise)}{by}{done}"
            case NoticeKind.PICTURE | NoticeKind.CAPTURED:
                what = _("lab picture") if notice.kind == NoticeKind.PICTURE else _("packet capture")
                return f"{what}{by}:"
            case NoticeKind.FAILED:
                return _("FAILED at {failed_step}: {error} — `/lab retry {name}` to try again").format(
                    failed_step=lab.failed_step, error=lab.error, name=lab.name
                )
            case _:
                text = f" — {notice.text}" if notice.text else ""
                return f"{lab_headline(lab)}{by}{text}"
