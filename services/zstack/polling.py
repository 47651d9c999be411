"""Backoff schedules: how often to poll an async job, and how to space retries of a failed request.

Both are plain data so tests and benchmarks can reason about them without a server: ``PollPolicy.delays()``
is the exact sequence of sleeps the client makes between polls, and ``polls_for(duration)`` says how many
polls a job of a given length costs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollPolicy:
    """Poll an api-job after ``initial`` seconds, then wait ``factor`` times longer each time, at most ``cap``.

    The cap bounds how late a finished job is noticed; the growth keeps short jobs cheap.
    """

    initial: float = 0.2
    factor: float = 1.5
    cap: float = 5.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.cap < self.initial or self.factor < 1:
            raise ValueError("PollPolicy needs 0 < initial <= cap and factor >= 1")

    def delays(self) -> Iterator[float]:
        """The sleep before each poll, forever."""
        delay = self.initial
        while True:
            yield delay
            delay = min(self.cap, delay * self.factor)

    def polls_for(self, duration: float) -> int:
        """How many polls a job that finishes ``duration`` seconds after submission costs (the last one sees it)."""
        elapsed = 0.0
        for polls, delay in enumerate(self.delays(), start=1):
            elapsed += delay
            if elapsed >= duration:
                return polls
        raise AssertionError("unreachable: delays() is infinite")

    def lateness_for(self, duration: float) -> float:
        """Seconds between the job finishing and the poll that sees it."""
        elapsed = 0.0
        for delay in self.delays():
            elapsed += delay
            if elapsed >= duration:
                return elapsed - duration
        raise AssertionError("unreachable: delays() is infinite")


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a request that failed in transport (refused, reset, timed out) ``attempts - 1`` more times."""

    attempts: int = 5
    initial: float = 0.2
    factor: float = 2.0
    cap: float = 3.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.initial < 0 or self.factor < 1:
            raise ValueError("RetryPolicy needs attempts >= 1, initial >= 0 and factor >= 1")

    def delays(self) -> Iterator[float]:
        """The sleep before each retry (``attempts - 1`` values)."""
        delay = self.initial
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(self.cap, delay * self.factor)
