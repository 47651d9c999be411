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
    * ``methods``: the HTTP methods faults apply to; ``budget``: how many faults may still happen (None =
      unlimited), so a test can say "drop exactly the next POST".
    """

    fail_rate: float = 0.0
    drop_rate: float = 0.0
    drop_phase: DropPhase = "random"
    slow_poll: float = 0.0
    seed: int = 0
    methods: frozenset[str] = frozenset({"GET", "POST", "PUT", "DELETE"})
    budget: int | None = None
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate()
        self._rng = random.Random(self.seed)

    def _validate(self) -> None:
        for name in ("fail_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.slow_poll < 0:
            raise ValueError("slow_poll must be >= 0")
        if self.drop_phase not in ("before", "after", "random"):
            raise ValueError(f"drop_phase must be before, after or random, got {self.drop_phase!r}")

    def set(self, *, fail_rate: float | None = None, drop_rate: float | None = None,
            drop_phase: DropPhase | None = None, slow_poll: float | None = None,
            methods: frozenset[str] | None = None, budget: int | Literal["keep"] | None = "keep") -> None:
        """Change some knobs at runtime (validated like the constructor's)."""
        if methods is not None:
            self.methods = methods
        if budget != "keep":
            self.budget = budget
        if fail_rate is not None:
            self.fail_rate = fail_rate
        if drop_rate is not None:
            self.drop_rate = drop_rate
        if drop_phase is not None:
            self.drop_phase = drop_phase
        if slow_poll is not None:
            self.slow_poll = slow_poll
        self._validate()

    def clear(self) -> None:
        """No faults any more."""
        self.set(fail_rate=0.0, drop_rate=0.0, slow_poll=0.0, budget=None)

    def roll_failure(self, method: str) -> bool:
        """Whether this mutating call fails."""
        if self.fail_rate <= 0 or method not in self.methods or self._rng.random() >= self.fail_rate:
            return False
        return self._spend()

    def roll_drop(self, method: str) -> DropPhase | None:
        """None, or when to drop this request's connection (``before`` or ``after`` handling it)."""
        if self.drop_rate <= 0 or method not in self.methods or self._rng.random() >= self.drop_rate:
            return None
        if not self._spend():
            return None
        if self.drop_phase == "random":
            return "before" if self._rng.random() < 0.5 else "after"
        return self.drop_phase

    def _spend(self) -> bool:
        if self.budget is None:
            return True
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True
