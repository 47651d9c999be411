"""The rules, against the real service and platform: quotas, the owner-or-admin rule and platform capacity give
clear errors and change nothing (no lab row, no event, no VM, no volume).

The engine is stopped first, so labs made to fill a quota stay `requested` and nothing is built.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from sandbox.zstack_sim.seed import GiB, OuterSeed
from services.errors import ConflictError, PermissionDeniedError, QuotaError
from services.labs.capacity import CapacityError
from services.labs.models import Lab, LabEvent, LabState
from services.labs.service import Actor
from tests.engine.sandbox_lab import OWNER, World, box_fixture, lab_world

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

box = box_fixture("rules")
OTHER, ADMIN = Actor("U_OTHER"), Actor("U_ADMIN", is_admin=True)


async def _footprint(world: World) -> tuple[int, int, int, int]:
    async with world.runtime.sessions() as session:
        labs = await session.scalar(select(func.count()).select_from(Lab))
        events = await session.scalar(select(func.count()).select_from(LabEvent))
    return int(labs or 0), int(events or 0), world.sim.state.count("vm"), world.sim.state.count("volume")


async def test_quotas_and_permissions_refuse_clearly_and_change_nothing(box, database_url: str, tmp_path: Path):
    async with lab_world(box, database_url, tmp_path, max_labs_per_user=1, max_labs_total=2) as world:
        await world.runtime.engine.stop()
        service = world.service
        mine = await service.create(OWNER, name="mine")
        await service.create(ADMIN, name="admins")
        before = await _footprint(world)
        assert before[2:] == (0, 0)

        with pytest.raises(QuotaError, match=r"you already have 1 live labs \(the limit\)"):
            await service.create(OWNER, name="second")
        with pytest.raises(QuotaError, match=r"already runs 2 labs \(the global limit\)"):
            await service.create(OTHER, name="third")
        for verb, call in [("destroy", service.destroy(OTHER, "mine")),
                           ("extend", service.extend(OTHER, "mine")),
                           ("retry", service.retry(OTHER, "mine")),
                           ("see how to reach", service.access(OTHER, "mine"))]:
            with pytest.raises(PermissionDeniedError, match=f"only <@{OWNER.user_id}> .* can {verb} lab `mine`"):
                await call
        assert await _footprint(world) == before
        lab = await world.lab_row("mine")
        assert (lab.state, lab.expires_at, lab.destroy_requested_by) == (LabState.REQUESTED, mine.expires_at, None)

        # The same requests pass the permission rule for an admin (and then meet the state rules).
        with pytest.raises(ConflictError, match="only a failed lab can be retried"):
            await service.retry(ADMIN, "mine")
        assert (await service.destroy(ADMIN, "mine")).state == LabState.DESTROYING


async def test_a_platform_without_room_refuses_the_lab_before_anything_exists(box, database_url: str,
                                                                              tmp_path: Path):
    # One host with room for VM1 (2 CPU / 4 GiB) but not for VM2 (4 CPU / 8 GiB, what the installer needs).
    small = OuterSeed(hosts=1, cpu_num=1, memory=6 * GiB, ranges=box.config.public_ranges())
    async with lab_world(box, database_url, tmp_path, seed=small) as world:
        with pytest.raises(CapacityError) as refused:
            await world.service.create(OWNER, name="toobig")
        message = str(refused.value)
        assert "no room for a `sandbox` lab" in message and "VM2" in message and "8 GiB" in message, message
        assert "1 usable hosts" in message and "6 GiB free" in message, message
        assert await _footprint(world) == (0, 0, 0, 0)
        assert world.runtime.engine.busy_labs == []
