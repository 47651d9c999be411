"""Bounded collection of a remote command's output.

A lab VM's owner has root: a ``.bashrc`` or a ``ForceCommand`` can make any command print without end. So a
command's stdout and stderr together may bring at most ``max_chars`` characters; past that labbot stops
reading, closes the channel and says so (``SSHOutputLimitError``). Output is read in chunks, never by
``readline`` (which would grow one endless line without bound), and the lines passed to a callback are cut at
``MAX_LINE_CHARS``.
"""

from __future__ import annotations

from services.ssh.result import LineCallback

MAX_OUTPUT_CHARS = 4 * 1024 * 1024  # per command, stdout and stderr together; a detached-job poll needs ~1.4 MiB
MAX_LINE_CHARS = 64 * 1024  # a longer "line" is passed on in pieces of this size
READ_CHUNK = 64 * 1024


class OutputLimitReached(Exception):
    """The command's output went past its budget; reading stops (caught by ``LabSSH.run``, never raised out)."""


class OutputBudget:
    """The characters a command's streams may still bring, shared by stdout and stderr."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.left = max_chars

    def take(self, size: int) -> int:
        """Take up to ``size`` characters; returns how many fit (fewer than ``size`` means: over budget)."""
        granted = min(size, self.left)
        self.left -= granted
        return granted


class StreamCollector:
    """The text of one stream, kept whole up to the shared budget, with complete lines passed to ``on_line``."""

    def __init__(self, budget: OutputBudget, on_line: LineCallback | None = None) -> None:
        self._budget = budget
        self._on_line = on_line
        self._parts: list[str] = []
        self._partial = ""

    async def feed(self, chunk: str) -> None:
        """Keep ``chunk`` (what fits the budget); raises ``OutputLimitReached`` when it did not all fit."""
        granted = self._budget.take(len(chunk))
        kept = chunk[:granted]
        self._parts.append(kept)
        if self._on_line is not None:
            await self._lines(kept)
        if granted < len(chunk):
            raise OutputLimitReached

    async def _lines(self, text: str) -> None:
        assert self._on_line is not None
        *complete, self._partial = (self._partial + text).split("\n")
        for line in complete:
            await self._on_line(line.rstrip("\r"))
        while len(self._partial) > MAX_LINE_CHARS:
            piece, self._partial = self._partial[:MAX_LINE_CHARS], self._partial[MAX_LINE_CHARS:]
            await self._on_line(piece)

    async def finish(self) -> None:
        """Pass on a last line that had no newline."""
        if self._on_line is not None and self._partial:
            partial, self._partial = self._partial, ""
            await self._on_line(partial.rstrip("\r"))

    def text(self) -> str:
        """Everything kept so far."""
        return "".join(self._parts)
