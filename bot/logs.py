"""labbot's log format: one record per line, whatever the text in it came from.

Log messages carry text labbot does not control: a lab VM's error output, a nested ZStack's error details, a
lab name typed in Slack. A newline in such text would start what looks like a new record (a forged timestamp
and level), and an escape sequence would act on the terminal of whoever reads the log. ``SafeFormatter``
shows both as escapes (``\\n``, ``\\x1b``). Tracebacks keep their lines, indented, with their controls escaped.
"""

from __future__ import annotations

import logging
import textwrap

from bot.text import printable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SafeFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose records are single lines with no terminal controls."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The record's line, its message escaped (the other fields are labbot's own)."""
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        """The traceback with controls escaped and every line indented, so none can pass for a record."""
        return textwrap.indent(printable(super().formatException(ei), multiline=True), "    ", lambda _: True)

    def formatStack(self, stack_info: str) -> str:
        """The stack, treated like a traceback."""
        return textwrap.indent(printable(super().formatStack(stack_info), multiline=True), "    ", lambda _: True)


class _LabbotHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler ``configure_logging`` installs (told apart so that calling it again replaces it)."""


def configure_logging(level: str | int) -> None:
    """Log to stderr at ``level`` through ``SafeFormatter``; other handlers (a test's capture) are left alone."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LabbotHandler)]:
        root.removeHandler(old)
    handler = _LabbotHandler()
    handler.setFormatter(SafeFormatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
