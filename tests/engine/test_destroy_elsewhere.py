"""A destroy asked through one labbot process while another one builds the lab (two Runtimes, one PostgreSQL).

The builder holds the lab's lease, so the asking process cannot kick it. It notices either at its next step
boundary (no step starts on a lab being destroyed) or at its next lease renewal (which re-reads the state and
stops the build where it is), then destroys the lab itself. A build that finishes after the request must
never turn the lab ready.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from services.labs.models import LabState, StepState
from services.labs.notifier import NoticeKind
from tests.engine.sandbox_lab import OWNER, World, box_fixture, lab_world

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres, pytest.mark.timeout(180)]

box = box_fixture("elsewhere")
LEASE = 10  # the smallest lease Settings allows: a renewal (and state re-read) every 3.3 s


class DestroyFromElsewhere:
    """An after_step hook of the building process: after ``step``, the other process asks for the destroy."""

    def __init__(self, step: str, *, then_hold: float = 0.0) -> None:
        self.step, self.then_hold = step, then_hold
        self.world: World | None = None
        self.asked_at: float | None = None

    async def __call__(self, _lab_id: int, step: str) -> None:
        if step != self.step or self.world is None or self.asked_at is not None:
            return
        other = self.world.runtimes[1]
        await other.service.destroy(OWNER, "twice")
        self.asked_at = time.monotonic()
        await asyncio.sleep(self.then_hold)  # a long step: only the lease renewal can notice now


@pytest.mark.parametrize(("step", "hold", "stopped_by"), [
    ("wait_ssh", 0.0, "the next step boundary"),
    ("wait_ssh", 60.0, "the lease renewal"),
    ("first_health", 0.0, "the end of the build"),
])
async def test_a_destroy_asked_elsewhere_stops_the_build_and_never_becomes_ready(
        box, pg_url: str, tmp_path: Path, step: str, hold: float, stopped_by: str) -> None:
    hook = DestroyFromElsewhere(step, then_hold=hold)
    async with lab_world(box, pg_url, tmp_path, after_step=hook, lease_seconds=LEASE, start=False) as world:
        other = world.new_runtime(owner="the-other-process")
        hook.world = world
        await world.runtime.start()
        await other.start()
        view = await world.service.create(OWNER, name="twice")  # built by the first process
        lab = await world.wait_state("twice", {LabState.DESTROYED, LabState.READY, LabState.FAILED})
        assert lab.state == LabState.DESTROYED, (stopped_by, lab.state, lab.error)
        assert hook.asked_at is not None
        if hold:
            assert time.monotonic() - hook.asked_at < LEASE, "the renewal, not the end of the step, stopped it"

        trail = [(e.actor, e.kind) for e in await world.events(view.id)]
        states = [k for _, k in trail if k.startswith("state:")]
        assert states == ["state:provisioning", "state:destroying", "state:destroyed"], trail
        assert (OWNER.user_id, "state:destroying") in trail
        assert NoticeKind.READY not in world.notices.kinds("twice")
        steps = await world.steps(view.id)
        if step == "wait_ssh":  # nothing after it ever started
            later = [steps[n] for n in ("iscsi_target", "install_zstack", "nested_compute")]
            assert all(s.state == StepState.PENDING and s.attempt == 0 for s in later), [
                (s.name, s.state, s.attempt) for s in later]
        assert world.outer_vms(lab.uuid) == [] and await world.machine_leftovers(lab) == []
        assert other.engine.busy_labs == []
