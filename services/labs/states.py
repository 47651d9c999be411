"""The lab lifecycle as pure domain code: which state may follow which.

    requested ─► provisioning ─► ready ◄─► expiring
        │             │            │          │
        └─────────────┴─► failed   └──────────┴─► destroying ─► destroyed
                            │  ▲                    ▲   │
                            │  └── destroy failed ──┼───┘
                            └── retry ─► provisioning, or destroy ─► destroying

An exercise lab goes back from ``ready`` to ``provisioning`` when labbot does a task for the student.
``failed`` is retryable: a failed build goes back to ``provisioning``, a failed destroy back to
``destroying``. Every live state may go to ``destroying``; ``destroyed`` is final. An unhealthy ready lab
stays ``ready`` (its health says degraded): health is not a lifecycle state.
"""

from __future__ import annotations

from services.errors import InvalidTransitionError
from services.i18n import _
from services.labs.models import LabState

S = LabState

TRANSITIONS: dict[LabState, frozenset[LabState]] = {
    S.REQUESTED: frozenset({S.PROVISIONING, S.FAILED, S.DESTROYING}),
    S.PROVISIONING: frozenset({S.READY, S.FAILED, S.DESTROYING}),
    # ready → provisioning: `/lab solve` on an exercise lab builds one more task of it.
    S.READY: frozenset({S.EXPIRING, S.DESTROYING, S.PROVISIONING}),
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
        raise InvalidTransitionError(
            _("{lab} is {current}; it cannot become {target}").format(lab=lab, current=current, target=target)
        )
    return LabState(target)
