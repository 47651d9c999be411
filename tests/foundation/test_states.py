"""The lab state machine as pure code."""

from __future__ import annotations

import itertools

import pytest

from services.errors import InvalidTransitionError
from services.labs.models import LabState
from services.labs.states import LIVE_STATES, TRANSITIONS, can_transition, check_transition


def test_happy_path_and_retry_edges() -> None:
    path = ["requested", "provisioning", "ready", "expiring", "ready", "destroying", "destroyed"]
    for current, target in itertools.pairwise(path):
        assert check_transition(current, target) == LabState(target)
    assert can_transition("failed", "provisioning") and can_transition("failed", "destroying")
    assert can_transition("destroying", "failed")


def test_every_live_state_can_be_destroyed_and_destroyed_is_final() -> None:
    for state in LIVE_STATES:
        assert can_transition(state, "destroying") or state is LabState.DESTROYING
    assert TRANSITIONS[LabState.DESTROYED] == frozenset()


@pytest.mark.parametrize(("current", "target"), [("requested", "ready"), ("destroyed", "provisioning"),
                                                 ("ready", "failed"), ("expiring", "provisioning")])
def test_illegal_edges(current: str, target: str) -> None:
    with pytest.raises(InvalidTransitionError, match=f"is {current}; it cannot become {target}"):
        check_transition(current, target)
