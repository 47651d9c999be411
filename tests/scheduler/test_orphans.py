"""The orphan sweep against the real ZStack simulator: what is an orphan, the grace period, reports, dry run."""

from __future__ import annotations

import dataclasses
import uuid as uuidlib
from dataclasses import dataclass
from datetime import timedelta

from pydantic import SecretStr

from services.labs.models import LabState
from services.scheduler.orphans import orphan_sweep
from services.zstack import RetryPolicy, ZStackClient
from tests.scheduler.conftest import T0, World

M = timedelta(minutes=1)
GiB = 1024**3


@dataclass
class Platform:
    """The uuids of what the test put on the lab platform."""

    live_vm1: str
    live_vm2: str
    gone_vm: str
    gone_volume: str
    ghost_vm: str
    manual_volume: str
    staging_vm: str
    other_vm: str


async def _vm(client: ZStackClient, name: str, tags: list[str]) -> str:
    image = await client.storage.find_image_by_name("sandbox-jump")
    offering = await client.compute.find_instance_offering_by_name("sandbox-small")
    l3 = await client.network.find_l3_network_by_name("sandbox-public")
    assert image and offering and l3
    vm = await client.compute.create_vm_instance(name, image_uuid=image.uuid, instance_offering_uuid=offering.uuid,
                                         l3_network_uuids=[l3.uuid], user_tags=tags)
    return vm.uuid


async def _volume(client: ZStackClient, name: str, tags: list[str]) -> str:
    return (await client.compute.create_data_volume(name, disk_size=GiB, user_tags=tags)).uuid


async def populate(world: World) -> Platform:
    """A live lab's VMs, a destroyed lab's leftovers, and every kind of look-alike."""
    client = world.ctx.platform
    assert isinstance(client, ZStackClient)
    live = await world.add_lab("live", LabState.READY, expires_in=4 * 60 * M)
    gone = await world.add_lab("gone", LabState.DESTROYED, expires_in=-60 * M, destroyed_at=T0 - 30 * M)
    platform = Platform(
        live_vm1=await _vm(client, "labbot-live-vm1", [f"labbot::lab::{live.uuid}"]),
        live_vm2=await _vm(client, "labbot-live-vm2", []),  # untagged, but recorded as the live lab's VM2
        gone_vm=await _vm(client, "labbot-gone-vm1", [f"labbot::lab::{gone.uuid}"]),
        gone_volume=await _volume(client, "labbot-gone-data", [f"labbot::lab::{gone.uuid}"]),
        ghost_vm=await _vm(client, "labbot-ghost-vm1", [f"labbot::lab::{uuidlib.uuid4().hex}"]),
        manual_volume=await _volume(client, "labbot-manual-data", []),
        staging_vm=await _vm(client, "staging-x-vm1", [f"labbot::lab::{uuidlib.uuid4().hex}"]),
        other_vm=await _vm(client, "webserver", ["team::web"]),
    )
    await world.update("live", vm1_uuid=platform.live_vm1, vm2_uuid=platform.live_vm2)
    return platform


async def test_orphans_are_reported_then_deleted_after_the_grace_period(world: World) -> None:
    p = await populate(world)
    first = await orphan_sweep(world.ctx, now=T0)
    assert first.ok and first.scanned == 7  # everything with either mark; "webserver" has neither
    found = {o.resource.uuid: o for o in first.orphans}
    assert set(found) == {p.gone_vm, p.gone_volume, p.ghost_vm, p.manual_volume}
    assert found[p.gone_vm].deletable and found[p.gone_volume].deletable
    assert found[p.gone_vm].why == f"lab gone was destroyed at {T0 - 30 * M:%Y-%m-%d %H:%M} UTC"
    assert not found[p.ghost_vm].deletable and "which this labbot's database does not know" in found[p.ghost_vm].why
    assert not found[p.manual_volume].deletable and "no labbot tag" in found[p.manual_volume].why
    assert first.deleted == [] and first.reported and len(first.new) == 4
    [report] = world.notices.orphan_reports
    assert report.channel == "C_LABS" and report.text.startswith("4 resource(s) on the lab platform")
    assert set(report.resources) == {"vm labbot-gone-vm1", "volume labbot-gone-data", "vm labbot-ghost-vm1",
                                   "volume labbot-manual-data"}
    assert report.resources["vm labbot-ghost-vm1"].endswith("never deleted automatically: check it by hand")
    assert f"deleted from {T0 + 120 * M:%Y-%m-%d %H:%M} UTC on" in report.resources["vm labbot-gone-vm1"]
    assert len(await world.events("gone", "orphan_seen")) == 2

    quiet = await orphan_sweep(world.ctx, now=T0 + 60 * M)
    assert quiet.new == [] and quiet.deleted == [] and not quiet.reported
    assert len(world.notices.orphan_reports) == 1

    due = await orphan_sweep(world.ctx, now=T0 + 120 * M)
    assert {o.resource.uuid for o in due.deleted} == {p.gone_vm, p.gone_volume} and due.reported
    state = world.sim.state
    assert state.get("vm", p.gone_vm) is None and state.get("volume", p.gone_volume) is None
    for kept in (p.live_vm1, p.live_vm2, p.ghost_vm, p.staging_vm, p.other_vm):
        assert state.get("vm", kept) is not None
    assert state.get("volume", p.manual_volume) is not None
    assert world.notices.orphan_reports[-1].resources["vm labbot-gone-vm1"].endswith("; deleted")
    assert len(await world.events("gone", "orphan_deleted")) == 2

    after = await orphan_sweep(world.ctx, now=T0 + 121 * M)
    assert len(after.orphans) == 2 and not after.reported  # the unconfirmed two, already reported
    reminder = await orphan_sweep(world.ctx, now=T0 + 120 * M + timedelta(hours=24))
    assert reminder.reported and len(world.notices.orphan_reports) == 3


async def test_with_deletion_off_nothing_is_ever_deleted(world: World) -> None:
    p = await populate(world)
    world.reconfigure(orphan_delete=False)
    await orphan_sweep(world.ctx, now=T0)
    late = await orphan_sweep(world.ctx, now=T0 + timedelta(days=3))
    assert late.deleted == [] and world.sim.state.get("vm", p.gone_vm) is not None
    assert "orphans: deletion is off (LABBOT_ORPHAN_DELETE); nothing deleted" in late.lines()
    report = world.notices.orphan_reports[-1]
    assert "kept (deletion is off)" in report.resources["vm labbot-gone-vm1"]
    assert "automatic deletion is off" in report.text


async def test_a_dry_run_records_deletes_and_reports_nothing(world: World) -> None:
    p = await populate(world)
    dry = await orphan_sweep(world.ctx, now=T0 + timedelta(days=1), dry_run=True)
    assert len(dry.orphans) == 4 and dry.deleted == [] and not dry.reported
    assert world.notices.notices == [] and await world.events("gone", "orphan_seen") == []
    assert world.sim.state.get("vm", p.gone_vm) is not None
    # Grace starts when a real sweep first sees the orphan, not at the dry run.
    real = await orphan_sweep(world.ctx, now=T0 + timedelta(days=1))
    assert len(real.new) == 4 and real.deleted == []


async def test_a_failed_deletion_is_reported_and_retried(world: World) -> None:
    p = await populate(world)
    await orphan_sweep(world.ctx, now=T0)
    world.sim.faults.set(fail_rate=1.0, methods=frozenset({"DELETE"}))
    failing = await orphan_sweep(world.ctx, now=T0 + 130 * M)
    assert not failing.ok and set(failing.failed) == {p.gone_vm, p.gone_volume} and failing.reported
    assert "delete failed" in world.notices.orphan_reports[-1].resources["vm labbot-gone-vm1"]
    world.sim.faults.clear()
    retried = await orphan_sweep(world.ctx, now=T0 + 140 * M)
    assert retried.ok and {o.resource.uuid for o in retried.deleted} == {p.gone_vm, p.gone_volume}


async def test_an_unreachable_platform_is_a_reported_failure(world: World) -> None:
    dead = ZStackClient("http://127.0.0.1:9/zstack/v1", "admin", SecretStr("password"),
                        retry_policy=RetryPolicy(attempts=1))
    try:
        summary = await orphan_sweep(dataclasses.replace(world.ctx, platform=dead), now=T0)
    finally:
        await dead.aclose()
    assert not summary.ok and summary.error and summary.lines()[0].startswith("orphans: could not read")
    assert world.notices.notices == []


async def test_a_destroyed_labs_network_is_an_orphan_deleted_l3_before_l2(world: World) -> None:
    """A lost destroy leaves the lab's VXLAN L2 and L3 behind; the sweep finds both by their marks, and deletes
    the L3 first (ZStack deletes an L3 with its L2, so the L2 goes last); a live lab's network is left alone."""
    client = world.ctx.platform
    assert isinstance(client, ZStackClient)
    live = await world.add_lab("live", LabState.READY, expires_in=4 * 60 * M)
    gone = await world.add_lab("gone", LabState.DESTROYED, expires_in=-60 * M, destroyed_at=T0 - 30 * M)
    pool = await client.network.find_l2_network_by_name("sandbox-vxlan-pool", network_type="VxlanNetworkPool")
    assert pool is not None
    nets = {}
    for lab in (live, gone):
        tags = [f"labbot::lab::{lab.uuid}"]
        l2 = await client.network.create_l2_vxlan_network(f"labbot-{lab.name}-l2", pool.uuid, user_tags=tags)
        l3 = await client.network.create_l3_network(f"labbot-{lab.name}-net", l2.uuid, user_tags=tags)
        nets[lab.name] = (l2.uuid, l3.uuid)

    first = await orphan_sweep(world.ctx, now=T0)
    found = {o.resource.uuid: o for o in first.orphans}
    assert set(found) == set(nets["gone"]) and all(o.deletable for o in found.values())
    assert [o.resource.kind for o in first.orphans] == ["l3 network", "l2 network"]
    assert {o.label for o in first.orphans} == {"l3 network labbot-gone-net", "l2 network labbot-gone-l2"}

    due = await orphan_sweep(world.ctx, now=T0 + 120 * M)
    assert [o.resource.kind for o in due.deleted] == ["l3 network", "l2 network"] and due.ok
    state = world.sim.state
    assert state.get("l2", nets["gone"][0]) is None and state.get("l3", nets["gone"][1]) is None
    assert state.get("l2", nets["live"][0]) is not None and state.get("l3", nets["live"][1]) is not None
