"""Fault injection for reliability tests: API errors, dropped connections and slow polls.

``Faults`` is plain mutable data; the running simulator reads it on every request, so a test can turn
faults on and off mid-run through ``sim.faults``. Dice are seeded, so a failing run can be replayed.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)

DropPhase = Literal["before", "after", "random"]


@dataclass
class Faults:
    """What goes wrong, and how often.

    * ``fail_rate``: share of mutating API calls (not login/logout) that fail with a 503 SYS.1006 error
      without doing anything (for async APIs the error comes on the poll, as ZStack's would).
    * ``drop_rate``: share of requests whose connection is closed without an answer. ``drop_phase`` says
      whether that happens before the request is handled, after it (the work is done, the answer lost), or
      either at random; "after" is the case that tests retries without duplicates.
    * ``slow_poll``: seconds every ``api-jobs`` answer is held back.
    """

    fail_rate: float = 0.0
    drop_rate: float = 0.0
    drop_phase: DropPhase = "random"
    slow_poll: float = 0.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("fail_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.slow_poll < 0:
            raise ValueError("slow_poll must be >= 0")
        self._rng = random.Random(self.seed)

    def set(self, *, fail_rate: float | None = None, drop_rate: float | None = None,
            drop_phase: DropPhase | None = None, slow_poll: float | None = None) -> None:
        """Change some knobs at runtime (validated like the constructor's)."""
        if fail_rate is not None:
            self.fail_rate = fail_rate
        if drop_rate is not None:
            self.drop_rate = drop_rate
        if drop_phase is not None:
            self.drop_phase = drop_phase
        if slow_poll is not None:
            self.slow_poll = slow_poll
        self.__post_init__()

    def clear(self) -> None:
        """No faults any more."""
        self.set(fail_rate=0.0, drop_rate=0.0, slow_poll=0.0)

    def roll_failure(self) -> bool:
        """Whether this mutating call fails."""
        return self.fail_rate > 0 and self._rng.random() < self.fail_rate

    def roll_drop(self) -> DropPhase | None:
        """None, or when to drop this request's connection (``before`` or ``after`` handling it)."""
        if self.drop_rate <= 0 or self._rng.random() >= self.drop_rate:
            return None
        if self.drop_phase == "random":
            return "before" if self._rng.random() < 0.5 else "after"
        return self.drop_phase
