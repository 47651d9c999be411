"""The lab platform (outer role): seeding, VM1/VM2 and the data volume through the client, with hooks recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from pydantic import SecretStr

from sandbox.zstack_sim.hooks import VmPlan
from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from services.zstack import ZStackCapacityError, ZStackClient, ZStackOperationError, like
from services.zstack.errors import ZStackInvalidArgumentError
from services.zstack.inventories import L3NetworkInventory
from services.zstack.query import eq
from tests.zstack.conftest import ClientFactory

GiB = 1024**3


@dataclass
class RecordingHooks:
    """Outer hooks that remember every call; a VM named ``fail-*`` does not boot."""

    calls: list[tuple[str, object]] = field(default_factory=list)
    plans: dict[str, VmPlan] = field(default_factory=dict)

    async def vm_started(self, plan: VmPlan) -> None:
        self.calls.append(("vm_started", plan.vm_uuid))
        if plan.name.startswith("fail-"):
            raise RuntimeError("sshd did not come up within 120s")
        self.plans[plan.vm_uuid] = plan

    async def vm_stopped(self, vm_uuid: str) -> None:
        self.calls.append(("vm_stopped", vm_uuid))

    async def vm_expunged(self, vm_uuid: str) -> None:
        self.calls.append(("vm_expunged", vm_uuid))

    async def volume_attached(self, volume_uuid: str, size: int, vm_uuid: str) -> None:
        self.calls.append(("volume_attached", (volume_uuid, size, vm_uuid)))

    async def volume_detached(self, volume_uuid: str, vm_uuid: str) -> None:
        self.calls.append(("volume_detached", (volume_uuid, vm_uuid)))

    async def volume_expunged(self, volume_uuid: str) -> None:
        self.calls.append(("volume_expunged", volume_uuid))

    async def l3_network_deleted(self, l3_uuid: str) -> None:
        self.calls.append(("l3_network_deleted", l3_uuid))


@pytest.fixture
async def hooked() -> AsyncIterator[tuple[RunningSimulator, RecordingHooks]]:
    hooks = RecordingHooks()
    async with serve_simulator("outer", hooks=hooks) as sim:
        yield sim, hooks


async def cpu_memory(client: ZStackClient) -> dict[str, int]:
    """The platform's CPU and memory capacity (GetCpuMemoryCapacity over everything)."""
    return await client.call("GetCpuMemoryCapacity", {"all": True})


async def _network(client: ZStackClient, name: str) -> L3NetworkInventory:
    found = await client.network.find_l3_network_by_name(name)
    assert found is not None, name
    return found


async def test_outer_is_seeded_from_the_profiles(outer: ZStackClient) -> None:
    for name in ("sandbox-jump", "sandbox-mn", "rocky-8.10-x86_64", "zstack-iso-4.8-x86_64"):
        image = await outer.storage.find_image_by_name(name)
        assert image is not None and image.usable and image.size
    offering = await outer.compute.find_instance_offering_by_name("lab-mn-8c16g-nested")
    assert offering is not None and (offering.cpu_num, offering.memory_size) == (8, 16 * GiB)
    public, vpc = await _network(outer, "sandbox-public"), await _network(outer, "sandbox-vpc")
    assert [(r.start_ip, r.end_ip, r.netmask, r.gateway) for r in public.ip_ranges] == [
        ("198.18.0.10", "198.18.3.250", "255.255.252.0", "198.18.0.1")]
    assert [(r.start_ip, r.end_ip, r.netmask, r.gateway) for r in vpc.ip_ranges] == [
        ("198.19.0.10", "198.19.15.250", "255.255.240.0", "198.19.0.1")]
    others = [await _network(outer, n) for n in ("public-net",)]
    cidrs = {r.network_cidr or "" for n in (public, vpc, *others) for r in n.ip_ranges}
    assert len(cidrs) == 3 and all(c.startswith(("198.18.", "198.19.")) for c in cidrs)
    for pool_name in ("sandbox-vxlan-pool", "lab-vxlan-pool"):  # the profiles' lab_network pools
        pool = await outer.network.find_l2_network_by_name(pool_name, network_type="VxlanNetworkPool")
        assert pool is not None and pool.attached_cluster_uuids
    assert public.category == "Public" and vpc.category == "Private"
    capacity = await cpu_memory(outer)
    assert capacity["totalCpu"] == capacity["availableCpu"] > 0 and capacity["totalMemory"] == 2 * 512 * GiB
    storage = await outer.call("GetPrimaryStorageCapacity", {"all": True})
    assert storage["availableCapacity"] > 10 * 1024 * GiB


async def test_lab_vms_and_data_volume_lifecycle(hooked: tuple[RunningSimulator, RecordingHooks],
                                                 make_client: ClientFactory) -> None:
    sim, hooks = hooked
    zs = make_client(sim.url)
    jump, mn = await zs.storage.find_image_by_name("sandbox-jump"), await zs.storage.find_image_by_name("sandbox-mn")
    small = await zs.compute.find_instance_offering_by_name("sandbox-small")
    public, vpc = await _network(zs, "sandbox-public"), await _network(zs, "sandbox-vpc")
    assert jump and mn and small
    before = await cpu_memory(zs)
    vm1 = await zs.compute.create_vm_instance("lab1-vm1", image_uuid=jump.uuid, instance_offering_uuid=small.uuid,
                                      l3_network_uuids=[public.uuid, vpc.uuid], ssh_public_key="ssh-ed25519 AAAAkey",
                                      root_password=SecretStr("r00t-pw"), user_tags=["labbot::lab::lab1"])
    vm2 = await zs.compute.create_vm_instance("lab1-vm2", image_uuid=mn.uuid, instance_offering_uuid=small.uuid,
                                      l3_network_uuids=[vpc.uuid], user_tags=["labbot::lab::lab1"])
    plan = hooks.plans[vm1.uuid]
    assert [(n.l3_network_name, n.ip, n.netmask, n.gateway, n.is_default) for n in plan.nics] == [
        ("sandbox-public", "198.18.0.10", "255.255.252.0", "198.18.0.1", True),
        ("sandbox-vpc", "198.19.0.10", "255.255.240.0", "198.19.0.1", False)]
    assert plan.ssh_public_keys == ["ssh-ed25519 AAAAkey"] and plan.root_password == "r00t-pw"
    assert vm2.ip_on(vpc.uuid) == "198.19.0.11" and hooks.plans[vm2.uuid].root_password is None
    assert await zs.query("QuerySystemTag", [like("tag", "rootPassword%")]) == []
    after = await cpu_memory(zs)
    assert before["availableCpu"] - after["availableCpu"] == 2 * small.cpu_num  # type: ignore[operator]

    volume = await zs.compute.create_data_volume("lab1-data", disk_size=50 * GiB, user_tags=["labbot::lab::lab1"])
    assert volume.status == "NotInstantiated" and volume.primary_storage_uuid is None
    volume = await zs.compute.attach_data_volume(volume.uuid, vm1.uuid)
    assert volume.status == "Ready" and volume.vm_instance_uuid == vm1.uuid and volume.device_id == 1
    assert volume.primary_storage_uuid == vm1.all_volumes[0].primary_storage_uuid
    assert ("volume_attached", (volume.uuid, 50 * GiB, vm1.uuid)) in hooks.calls
    assert (await zs.compute.attach_data_volume(volume.uuid, vm1.uuid)).uuid == volume.uuid  # no-op the second time
    assert [v.uuid for v in await zs.compute.find_volumes_by_user_tag("labbot::lab::lab1")] == [volume.uuid]

    await zs.call("DestroyVmInstance", {"uuid": vm1.uuid})
    destroyed = await zs.compute.get_vm(vm1.uuid)
    assert destroyed and destroyed.state == "Destroyed" and all(n.ip is None for n in destroyed.vm_nics)
    assert ("volume_detached", (volume.uuid, vm1.uuid)) in hooks.calls
    assert await zs.compute.expunge_vm(vm1.uuid) and await zs.compute.expunge_vm(vm2.uuid)  # vm2 is destroyed first
    assert await zs.compute.get_vm(vm1.uuid) is None and not await zs.compute.expunge_vm(vm1.uuid)
    assert await zs.compute.expunge_data_volume(volume.uuid) and await zs.compute.get_volume(volume.uuid) is None
    assert [c for c in hooks.calls if c[0] in ("vm_expunged", "volume_expunged")] == [
        ("vm_expunged", vm1.uuid), ("vm_expunged", vm2.uuid), ("volume_expunged", volume.uuid)]
    assert sim.state.count("vm") == sim.state.count("volume") == sim.state.count("nic") == 0
    assert await cpu_memory(zs) == before


async def test_failed_boot_rolls_back_and_says_why(hooked: tuple[RunningSimulator, RecordingHooks],
                                                   make_client: ClientFactory) -> None:
    sim, hooks = hooked
    zs = make_client(sim.url)
    image = await zs.storage.find_image_by_name("sandbox-jump")
    small = await zs.compute.find_instance_offering_by_name("sandbox-small")
    vpc = await _network(zs, "sandbox-vpc")
    assert image and small
    before = await cpu_memory(zs)
    with pytest.raises(ZStackOperationError) as caught:
        await zs.compute.create_vm_instance("fail-boot", image_uuid=image.uuid, instance_offering_uuid=small.uuid,
                                    l3_network_uuids=[vpc.uuid])
    assert caught.value.code == "SYS.1006" and "sshd did not come up" in caught.value.details
    assert sim.state.count("vm") == sim.state.count("nic") == sim.state.count("volume") == 0
    assert hooks.calls[-1][0] == "vm_expunged"
    assert await cpu_memory(zs) == before


async def test_platform_capacity_and_state_errors(outer: ZStackClient) -> None:
    image = await outer.storage.find_image_by_name("sandbox-jump")
    vpc = await _network(outer, "sandbox-vpc")
    assert image
    with pytest.raises(ZStackCapacityError) as full:
        await outer.compute.create_vm_instance("huge", image_uuid=image.uuid, cpu_num=4000, memory_size=2 * GiB,
                                       l3_network_uuids=[vpc.uuid])
    assert full.value.codes() == ["SYS.1002", "HOST_ALLOCATION.1000"]
    assert "no host having cpu[4000]" in full.value.details and await outer.count("QueryVmInstance") == 0
    vm = await outer.compute.create_vm_instance("vm", image_uuid=image.uuid, cpu_num=1, memory_size=GiB,
                                        l3_network_uuids=[vpc.uuid])
    with pytest.raises(ZStackOperationError) as wrong_state:
        await outer.call("ExpungeVmInstance", {"uuid": vm.uuid})
    assert wrong_state.value.code == "VM.1010" and "allowed states are ['Destroyed']" in wrong_state.value.details
    stopped = await outer.compute.stop_vm(vm.uuid)
    assert stopped.state == "Stopped" and stopped.host_uuid is None
    assert (await outer.compute.start_vm(vm.uuid)).state == "Running"


async def test_a_lab_network_per_lab_from_the_vxlan_pool(hooked: tuple[RunningSimulator, RecordingHooks],
                                                         make_client: ClientFactory) -> None:
    sim, hooks = hooked
    zs = make_client(sim.url)
    pool = await zs.network.find_l2_network_by_name("sandbox-vxlan-pool", network_type="VxlanNetworkPool")
    public = await _network(zs, "sandbox-public")
    assert pool is not None
    first = await zs.network.create_l2_vxlan_network("labbot-a-l2", pool.uuid, user_tags=["labbot::lab::a"])
    second = await zs.network.create_l2_vxlan_network("labbot-b-l2", pool.uuid)
    # ZStack picks the VNIs (lowest free first) and attaches each network where the pool is attached.
    assert (first.type, first.pool_uuid, first.vni, second.vni) == ("VxlanNetwork", pool.uuid, 100, 101)
    assert first.attached_cluster_uuids == pool.attached_cluster_uuids
    with pytest.raises(ZStackInvalidArgumentError) as not_a_pool:
        await zs.network.create_l2_vxlan_network("x", public.l2_network_uuid or "")
    assert "is not a vxlan network pool" in not_a_pool.value.details
    with pytest.raises(ZStackInvalidArgumentError) as taken:
        await zs.call("CreateL2VxlanNetwork", {"name": "x", "poolUuid": pool.uuid, "vni": 101})
    assert "already used" in taken.value.details

    l3 = await zs.network.create_l3_network("labbot-a-net", first.uuid, user_tags=["labbot::lab::a"])
    await zs.network.add_ip_range(l3.uuid, "r", "198.19.8.2", "198.19.8.254", "255.255.255.0", "198.19.8.1")
    await zs.network.attach_flat_network_services(l3.uuid, ("DHCP", "Userdata"))
    image = await zs.storage.find_image_by_name("sandbox-mn")
    small = await zs.compute.find_instance_offering_by_name("sandbox-small")
    assert image and small
    vm = await zs.compute.create_vm_instance("labbot-a-vm2", image_uuid=image.uuid, instance_offering_uuid=small.uuid,
                                     l3_network_uuids=[l3.uuid])
    assert vm.ip_on(l3.uuid) == "198.19.8.2"
    assert [n.uuid for n in await zs.network.find_l3_networks_by_user_tag("labbot::lab::%")] == [l3.uuid]
    assert [n.uuid for n in await zs.network.find_l2_networks_by_user_tag("labbot::lab::a")] == [first.uuid]

    assert await zs.compute.expunge_vm(vm.uuid)
    # Deleting the L2 deletes its L3 (and its range) with it; the hook removes what made the segment real.
    assert await zs.network.delete_l2_network(first.uuid) and not await zs.network.delete_l2_network(first.uuid)
    assert await zs.network.get_l3_network(l3.uuid) is None and not await zs.network.delete_l3_network(l3.uuid)
    assert ("l3_network_deleted", l3.uuid) in hooks.calls
    assert sim.state.count("ip_range", l3NetworkUuid=l3.uuid) == 0
    again = await zs.network.create_l2_vxlan_network("labbot-c-l2", pool.uuid)
    assert again.vni == 100  # a deleted network's VNI is free again


async def test_an_image_of_a_vm_root_volume(outer: ZStackClient) -> None:
    """CreateRootVolumeTemplateFromRootVolume (labbot bake): only a root volume, onto Connected backup storage,
    Ready with the root disk's size and the caller's tags; what a retried bake asks again it finds."""
    image = await outer.storage.find_image_by_name("sandbox-mn")
    vpc = await _network(outer, "sandbox-vpc")
    assert image
    vm = await outer.compute.create_vm_instance("mn", image_uuid=image.uuid, cpu_num=1, memory_size=GiB,
                                        l3_network_uuids=[vpc.uuid])
    volume = await outer.compute.create_data_volume("data", disk_size=GiB)
    await outer.compute.attach_data_volume(volume.uuid, vm.uuid)
    storages = [str(ref["backupStorageUuid"]) for ref in image.backup_storage_refs]
    with pytest.raises(ZStackInvalidArgumentError, match="is not a root volume"):
        await outer.storage.create_root_volume_template("bad", volume.uuid, storages)
    await outer.compute.stop_vm(vm.uuid)
    assert vm.root_volume_uuid
    uuid = "5e1f3c3b0a1b4c7d9e8f00112233aabb"
    baked = await outer.storage.create_root_volume_template("mn-baked", vm.root_volume_uuid, storages,
                                                            resource_uuid=uuid,
                                                    user_tags=["labbot::baked", "labbot::zstack-version::5.2.1"])
    assert (baked.uuid, baked.status, baked.media_type, baked.platform) == (uuid, "Ready", "RootVolumeTemplate",
                                                                            image.platform)
    assert baked.size == image.size and baked.actual_size and [r["status"] for r in baked.backup_storage_refs] == [
        "Ready"]
    tags = await outer.query_user_tags("labbot::zstack-version::%")
    assert [(t.tag, t.resource_uuid) for t in tags] == [("labbot::zstack-version::5.2.1", uuid)]
    again = await outer.storage.create_root_volume_template("mn-baked", vm.root_volume_uuid, storages,
                                                            resource_uuid=uuid)
    assert again.uuid == uuid and await outer.count("QueryImage", [eq("name", "mn-baked")]) == 1
    made = await outer.compute.create_vm_instance("from-baked", image_uuid=uuid, cpu_num=1, memory_size=GiB,
                                          l3_network_uuids=[vpc.uuid])
    assert made.state == "Running" and made.image_uuid == uuid
