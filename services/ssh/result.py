"""The result of one command on a lab VM: the thin seam between the SSH layer and its callers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    """Exit status and complete output of a finished command."""

    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether the command exited with status 0."""
        return self.exit_status == 0


# A coroutine that runs one shell command on one host and returns its result without raising on a non-zero
# exit status. The iSCSI backends take one so they can be driven by SSH or by a recorded transcript.
Runner = Callable[[str], Awaitable[CommandResult]]

# Receives each output line of a running command (without the newline), e.g. to show progress.
LineCallback = Callable[[str], Awaitable[None]]

# Receives the lines of one read at once (a detached job's poll), so a consumer can store them in one write.
LinesCallback = Callable[[list[str]], Awaitable[None]]
