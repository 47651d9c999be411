"""The lab lifecycle as pure domain code: which state may follow which.

    requested ─► provisioning ─► ready ◄─► expiring
        │             │            │          │
        └─────────────┴─► failed   └──────────┴─► destroying ─► destroyed
                            │  ▲                    ▲   │
                            │  └── destroy failed ──┼───┘
                            └── retry ─► provisioning, or destroy ─► destroying

``failed`` is retryable: a failed build goes back to ``provisioning``, a failed destroy back to
``destroying``. Every live state may go to ``destroying``; ``destroyed`` is final. An unhealthy ready lab
stays ``ready`` (its health says degraded): health is not a lifecycle state.
"""

from __future__ import annotations

from services.errors import InvalidTransitionError
from services.labs.models import LabState

S = LabState

TRANSITIONS: dict[LabState, frozenset[LabState]] = {
    S.REQUESTED: frozenset({S.PROVISIONING, S.FAILED, S.DESTROYING}),
    S.PROVISIONING: frozenset({S.READY, S.FAILED, S.DESTROYING}),
    S.READY: frozenset({S.EXPIRING, S.DESTROYING}),
    S.EXPIRING: frozenset({S.READY, S.DESTROYING}),
    S.FAILED: frozenset({S.PROVISIONING, S.DESTROYING}),
    S.DESTROYING: frozenset({S.DESTROYED, S.FAILED}),
    S.DESTROYED: frozenset(),
}

LIVE_STATES = frozenset(s for s in LabState if s is not S.DESTROYED)
# States in which a lab's pipeline or destroy is (or should be) being worked on by some process.
WORKING_STATES = frozenset({S.REQUESTED, S.PROVISIONING, S.DESTROYING})


def can_transition(current: str, target: str) -> bool:
    """Whether the state machine has the edge ``current → target``."""
    return LabState(target) in TRANSITIONS[LabState(current)]


def check_transition(current: str, target: str, *, lab: str = "lab") -> LabState:
    """Return ``target`` as a LabState, or raise InvalidTransitionError naming both states."""
    if not can_transition(current, target):
        raise InvalidTransitionError(f"{lab} is {current}; it cannot become {target}")
    return LabState(target)
