"""A Runner that plays a recorded session with VM1: each expected command in order, with the reply it got.

Backends are driven through it without SSH; the test then knows the exact commands issued (and that there
were no others). A step's expectation is the exact command text, or a predicate with a description for
commands that carry generated content (a JSON file being written).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from services.ssh.result import CommandResult

Expectation = str | tuple[str, Callable[[str], bool]]


def ok(stdout: str = "") -> CommandResult:
    """A successful reply."""
    return CommandResult(0, stdout, "")


def fail(stderr: str, status: int = 1) -> CommandResult:
    """A failed reply."""
    return CommandResult(status, "", stderr)


@dataclass
class Transcript:
    """Plays ``steps`` in order; ``commands`` records what the backend actually ran."""

    steps: list[tuple[Expectation, CommandResult]]
    commands: list[str] = field(default_factory=list)

    async def __call__(self, command: str) -> CommandResult:
        self.commands.append(command)
        assert self.steps, f"unexpected extra command: {command}"
        expected, reply = self.steps.pop(0)
        if isinstance(expected, str):
            assert command == expected, f"expected:\n  {expected}\ngot:\n  {command}"
        else:
            description, predicate = expected
            assert predicate(command), f"expected {description}, got:\n  {command}"
        return reply

    def finished(self) -> None:
        """Every recorded step was played."""
        assert not self.steps, f"commands never issued: {[s[0] for s in self.steps]}"
