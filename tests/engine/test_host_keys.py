"""Pinned host keys across a lab's life in the lab-in-a-box.

A VM that vanished from the platform is recreated on resume or retry (same lab, same role, new machine, new
host key): labbot forgets the old pin and rebuilds instead of failing on a "changed host key". A VM that was
not recreated but shows another key is still refused, with the audit event, and the pin is kept.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sandbox import sshd
from services.labs.models import LabState
from tests.conftest import on_database
from tests.engine.sandbox_lab import OWNER, World, box_fixture, lab_world

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(240)]

box = box_fixture("keys")


class StopAfterPinning:
    """An after_step hook: once VM1 and VM2 are reached (keys pinned), stop the engine, as a restart would."""

    def __init__(self) -> None:
        self.world: World | None = None
        self.stopping: asyncio.Task[None] | None = None

    async def __call__(self, _lab_id: int, step: str) -> None:
        if step == "wait_ssh" and self.world is not None and self.stopping is None:
            self.stopping = asyncio.create_task(self.world.runtime.engine.stop())

    async def stopped(self) -> None:
        async with asyncio.timeout(60):
            while self.stopping is None:
                await asyncio.sleep(0.05)
        await self.stopping


async def _half_built(world: World, hook: StopAfterPinning, name: str):
    hook.world = world
    await world.service.create(OWNER, name=name)
    await hook.stopped()
    lab = await world.lab_row(name)
    assert lab.state == LabState.PROVISIONING
    pins = await world.host_keys(lab.uuid)
    assert set(pins) == {"vm1", "vm2"}
    return lab, pins


@on_database("sqlite")
async def test_a_recreated_vm_gets_a_new_pin_and_the_lab_is_rebuilt(box, database_url: str, tmp_path: Path):
    hook = StopAfterPinning()
    async with lab_world(box, database_url, tmp_path, after_step=hook) as world:
        lab, pins = await _half_built(world, hook, "reborn")
        await world.runtime.outer.compute.expunge_vm(lab.vm1_uuid)  # lost out of band (an admin, a platform failure)
        assert not box.config.vm_dir(lab.vm1_uuid).exists()

        await world.new_runtime().start()  # the restarted process resumes the lab
        lab = await world.wait_state("reborn", {LabState.READY, LabState.FAILED})
        assert lab.state == LabState.READY, (lab.failed_step, lab.error)
        new_pins = await world.host_keys(lab.uuid)
        assert new_pins["vm2"] == pins["vm2"] and new_pins["vm1"] != pins["vm1"]
        trail = [(e.kind, e.detail) for e in await world.events(lab.id)]
        assert ("rebuild", "vm1 no longer on the lab platform; rebuilding from create_vms") in trail
        assert not any(kind == "host_key_changed" for kind, _ in trail)
        assert sorted(v["uuid"] for v in world.outer_vms(lab.uuid)) == sorted([lab.vm1_uuid, lab.vm2_uuid])


async def test_a_changed_key_on_the_same_vm_is_still_refused(box, database_url: str, tmp_path: Path):
    hook = StopAfterPinning()
    async with lab_world(box, database_url, tmp_path, after_step=hook) as world:
        lab, pins = await _half_built(world, hook, "spoofed")
        sshd.regenerate_host_key(box.config.vm_dir(lab.vm1_uuid) / "ssh")
        await world.runtime.outer.compute.stop_vm(lab.vm1_uuid)  # reboot: sshd comes back with the other key
        await world.runtime.outer.compute.start_vm(lab.vm1_uuid)

        runtime = world.new_runtime()
        await runtime.start()
        lab = await world.wait_state("spoofed", {LabState.READY, LabState.FAILED})
        assert lab.state == LabState.FAILED and "host key" in (lab.error or ""), lab.error
        assert "possible interception" in (lab.error or "")
        assert await world.host_keys(lab.uuid) == pins  # the pin is kept, not replaced
        kinds = [e.kind for e in await world.events(lab.id)]
        assert "host_key_changed" in kinds and "rebuild" not in kinds

        await runtime.service.destroy(OWNER, "spoofed")
        lab = await world.wait_state("spoofed", {LabState.DESTROYED}, timeout=60)
        assert await world.machine_leftovers(lab) == [] and await world.host_keys(lab.uuid) == {}
