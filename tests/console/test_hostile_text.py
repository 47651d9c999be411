"""Text a lab VM controls (progress, errors, step output) reaches the admin's terminal and the logs as text only.

The console is a real rich Console writing for a colour terminal: the only escape sequences allowed in what it
writes are rich's own colour codes (SGR, ``ESC [ … m``); the VM's own sequences must arrive as visible escapes.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re

import pytest
from rich.console import Console

from bot.console.notifier import ConsoleNotifier
from bot.console.render import render_reply
from bot.logs import SafeFormatter, configure_logging
from bot.text import printable
from services.dispatch import Reply, ReplyKind
from services.labs.notifier import Notice, NoticeKind
from services.labs.views import LabView, StepView
from tests.slack.factories import lab as factory_lab

# Set the window title, clear the screen, a one-byte CSI, a carriage return over the line, a right-to-left
# override, rich markup that closes a tag never opened, and an emoji code.
HOSTILE = "10% \x1b]0;owned\x07\x1b[2J\x9b31m\rfake line \u202eevil [/dim] [bold red]loud[/] :smile:"
SGR_ONLY = re.compile(r"\x1b\[[0-9;]*m")


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=400, force_terminal=True, color_system="truecolor"), out


def lab_view() -> LabView:
    return factory_lab(name="lab-platform")


def step(*, progress: str | None = None, error: str | None = None, output: str | None = None) -> StepView:
    return StepView(name="install_zstack", title="Install ZStack on VM2", state="failed" if error else "running",
                    attempt=1, started_at=None, finished_at=None, duration_seconds=None, error=error,
                    progress=progress, output_tail=output)


def assert_inert(written: str) -> str:
    """``written`` has no escape sequence but rich's colours and no C0/C1 control but newlines; returns its text."""
    text = SGR_ONLY.sub("", written)
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", text), repr(text)
    return text


async def test_progress_from_the_vm_is_shown_literally_not_acted_on() -> None:
    console, out = terminal()
    lab = lab_view()
    await ConsoleNotifier(console).notify(Notice(NoticeKind.STEP_PROGRESS, lab, step=step(progress=HOSTILE),
                                                 text=HOSTILE))
    text = assert_inert(out.getvalue())
    assert text.count("\n") == 1  # one line, none dropped and none forged
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\rfake line \\u202eevil [/dim] [bold red]loud[/] :smile:" in text
    assert text.startswith("[lab-platform]   … Install ZStack on VM2: 10% ")


async def test_a_failure_whose_error_closes_a_markup_tag_is_printed() -> None:
    console, out = terminal()
    lab = dataclasses.replace(lab_view(), state="failed", failed_step="install_zstack", error=HOSTILE)
    await ConsoleNotifier(console).notify(Notice(NoticeKind.FAILED, lab))
    text = assert_inert(out.getvalue())
    assert "FAILED at install_zstack: 10% " in text and "[/dim] [bold red]loud[/]" in text


def test_step_output_keeps_its_lines_and_loses_its_controls() -> None:
    console, out = terminal()
    output = "unpacking\n\x1b[2Jinstalling [/dim]\n\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07\n"
    reply = Reply(ReplyKind.LOGS, text="logs of lab-platform", steps=(step(error=HOSTILE, output=output),))
    render_reply(console, reply)
    text = assert_inert(out.getvalue())
    assert "unpacking\n\\x1b[2Jinstalling [/dim]\n\\x1b]8;;http://evil.example/\\x07click\\x1b]8;;\\x07\n" in text


def test_printable_escapes_controls_and_keeps_ordinary_text() -> None:
    assert printable("ZStack 5.2.1 — 42% ✓ zählen") == "ZStack 5.2.1 — 42% ✓ zählen"
    assert printable("a\nb\tc\r\x00\x7f") == "a\\nb\\tc\\r\\x00\\x7f"
    assert printable("a\nb\tc\x1b", multiline=True) == "a\nb\tc\\x1b"


def test_a_log_record_stays_one_line_without_controls() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("tests.hostile_text")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        forged = "boom\n2026-12-03 08:00:00,000 INFO labbot: admin approved\x1b[2J"
        logger.warning("step failed: %s", forged)
        try:
            raise RuntimeError(forged)
        except RuntimeError:
            logger.exception("lab %s", "x\x1b]0;t\x07")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = out.getvalue().splitlines()
    assert lines[0] == ("WARNING tests.hostile_text: step failed: boom\\n2026-12-03 08:00:00,000 INFO labbot: "
                        "admin approved\\x1b[2J")
    assert lines[1] == "ERROR tests.hostile_text: lab x\\x1b]0;t\\x07"
    assert all(line.startswith("    ") for line in lines[2:])  # the traceback, indented: no line passes for a record
    assert "\x1b" not in out.getvalue()
    assert "    2026-12-03 08:00:00,000 INFO labbot: admin approved\\x1b[2J" in lines


def test_configure_logging_replaces_its_own_handler_and_keeps_others(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        configure_logging(logging.WARNING)
        configure_logging(logging.WARNING)
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1 and isinstance(ours[0].formatter, SafeFormatter)
        assert all(h in root.handlers for h in before)
        logging.getLogger("tests.hostile_text").warning("from the VM: %s", "a\x1b[2Jb\nc")
        assert "from the VM: a\\x1b[2Jb\\nc\n" in capsys.readouterr().err
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)
