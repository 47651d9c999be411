"""The nested ZStack a lab builds on VM2, end to end through the client, and its failure cases."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from pydantic import SecretStr

from sandbox.zstack_sim.hooks import SYNTHETIC_LUN_SIZE, NoHooks
from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from services.zstack import (
    ZStackCapacityError,
    ZStackClient,
    ZStackInvalidArgumentError,
    ZStackOperationError,
    new_uuid,
)
from services.zstack.inventories import VmInstanceInventory
from tests.zstack.conftest import ClientFactory

GiB = 1024**3
TAG = "labbot::lab::t1"
VM1_IP, VM2_IP = "198.19.0.10", "198.19.0.11"


@dataclass
class NestedIds:
    """The resource uuids the engine would keep for one lab, so a resumed build reuses them."""

    zone: str = field(default_factory=new_uuid)
    cluster: str = field(default_factory=new_uuid)
    host: str = field(default_factory=new_uuid)
    iscsi: str = field(default_factory=new_uuid)
    storage: str = field(default_factory=new_uuid)
    backup: str = field(default_factory=new_uuid)
    image: str = field(default_factory=new_uuid)
    l2: str = field(default_factory=new_uuid)
    l3: str = field(default_factory=new_uuid)
    ip_range: str = field(default_factory=new_uuid)
    offering: str = field(default_factory=new_uuid)
    vm: str = field(default_factory=new_uuid)


async def build_nested(zs: ZStackClient, ids: NestedIds) -> VmInstanceInventory:
    """zone → cluster → KVM host → iSCSI → SharedBlock → backup storage → image → network → offering → VM."""
    tags = [TAG]
    pw = SecretStr("vm2-root-pw")
    zone = await zs.infra.create_zone("zone-1", resource_uuid=ids.zone, user_tags=tags)
    cluster = await zs.infra.create_cluster("cluster-1", zone.uuid, resource_uuid=ids.cluster, user_tags=tags)
    host = await zs.infra.add_kvm_host("vm2", VM2_IP, cluster.uuid, username="root", password=pw,
                                       resource_uuid=ids.host)
    assert host.status == "Connected" and host.cluster_uuid == cluster.uuid
    server = await zs.storage.add_iscsi_server(VM1_IP, port=3260, name="vm1", resource_uuid=ids.iscsi)
    server = await zs.storage.attach_iscsi_server_to_cluster(server.uuid, cluster.uuid)
    assert server.attached_cluster_uuids == [cluster.uuid]
    storage = await zs.storage.get_primary_storage(ids.storage)
    if storage is None:  # on a resumed build the LUN is no candidate any more: it is this storage's disk
        disks = [c.wwid for c in await zs.storage.get_shared_block_candidates(cluster.uuid)]
        storage = await zs.storage.add_shared_block_group_primary_storage("ps-sharedblock", zone.uuid, disks,
                                                                  resource_uuid=ids.storage)
    storage = await zs.storage.attach_primary_storage_to_cluster(storage.uuid, cluster.uuid)
    backup = await zs.storage.add_image_store_backup_storage("bs", VM2_IP, username="root", password=pw,
                                                             url="/zstack_bs",
                                                     resource_uuid=ids.backup)
    await zs.storage.attach_backup_storage_to_zone(backup.uuid, zone.uuid)
    image = await zs.storage.add_image("cirros-0.6", f"http://{VM1_IP}:8000/cirros-0.6.2-x86_64-disk.img",
                                       [backup.uuid],
                               resource_uuid=ids.image)
    assert image.status == "Ready" and image.size
    l2 = await zs.network.create_l2_no_vlan_network("l2-flat", zone.uuid, "eth0", resource_uuid=ids.l2)
    await zs.network.attach_l2_network_to_cluster(l2.uuid, cluster.uuid)
    l3 = await zs.network.create_l3_network("l3-flat", l2.uuid, resource_uuid=ids.l3)
    await zs.network.add_ip_range(l3.uuid, "range", "198.19.200.10", "198.19.200.100", "255.255.255.0", "198.19.200.1",
                          resource_uuid=ids.ip_range)
    await zs.network.attach_flat_network_services(l3.uuid, ("DHCP", "Userdata"))
    offering = await zs.compute.create_instance_offering("small-1c1g", 1, GiB, resource_uuid=ids.offering)
    return await zs.compute.create_vm_instance("nested-vm1", image_uuid=image.uuid,
                                               instance_offering_uuid=offering.uuid,
                                       l3_network_uuids=[l3.uuid], resource_uuid=ids.vm, user_tags=tags)


async def test_full_nested_build_and_resume(nested_sim: RunningSimulator, nested: ZStackClient) -> None:
    ids = NestedIds()
    vm = await build_nested(nested, ids)
    state = nested_sim.state
    storage = await nested.storage.get_primary_storage(ids.storage)
    assert storage is not None and storage.type == "SharedBlock" and storage.status == "Connected"
    assert storage.total_capacity == SYNTHETIC_LUN_SIZE and storage.attached_cluster_uuids == [ids.cluster]
    discovered = await NoHooks().discover_iscsi(VM1_IP, 3260)
    assert [b.disk_uuid for b in storage.shared_blocks] == [lun.wwid for t in discovered for lun in t.luns]
    assert vm.state == "Running" and vm.uuid == ids.vm and vm.host_uuid == ids.host
    assert [n.ip for n in vm.vm_nics] == ["198.19.200.10"]
    root = next(v for v in vm.all_volumes if v.type == "Root")
    assert root.primary_storage_uuid == ids.storage and root.size
    used = await nested.storage.get_primary_storage(ids.storage)
    assert used is not None and used.available_capacity == SYNTHETIC_LUN_SIZE - root.size
    host = await nested.infra.get_host(ids.host)
    assert host and host.total_memory_capacity and host.available_memory_capacity == host.total_memory_capacity - GiB
    assert await nested.storage.get_shared_block_candidates(ids.cluster) == []  # the LUN is in use now
    assert [v.uuid for v in await nested.compute.find_vms_by_user_tag("labbot::lab::%")] == [ids.vm]

    executed = dict(state.calls)
    counts = {kind: len(records) for kind, records in state.records.items()}
    again = await build_nested(nested, ids)  # a resumed build: everything exists, nothing is created twice
    assert again.uuid == vm.uuid
    assert {kind: len(records) for kind, records in state.records.items()} == counts
    created = {a: n for a, n in state.calls.items() if a.startswith(("Create", "Add", "Attach")) and n}
    assert created == {a: n for a, n in executed.items() if a.startswith(("Create", "Add", "Attach")) and n}


async def test_candidates_need_a_connected_host(nested: ZStackClient) -> None:
    zone = await nested.infra.create_zone("z")
    cluster = await nested.infra.create_cluster("c", zone.uuid)
    server = await nested.storage.add_iscsi_server(VM1_IP)
    assert [t.iqn for t in server.iscsi_targets] and server.luns[0].size == SYNTHETIC_LUN_SIZE
    await nested.storage.attach_iscsi_server_to_cluster(server.uuid, cluster.uuid)
    assert await nested.storage.get_shared_block_candidates(cluster.uuid) == []
    await nested.infra.add_kvm_host("h", VM2_IP, cluster.uuid, username="root", password=SecretStr("pw"))
    [candidate] = await nested.storage.get_shared_block_candidates(cluster.uuid)
    assert candidate.wwid.startswith("36001405") and len(candidate.wwid) == 33
    assert candidate.size == SYNTHETIC_LUN_SIZE and candidate.target_identifier == server.iscsi_targets[0].iqn
    assert await nested.storage.attach_iscsi_server_to_cluster(server.uuid, cluster.uuid)  # already attached: no-op


async def test_nested_refusals_carry_zstack_codes(nested: ZStackClient) -> None:
    zone = await nested.infra.create_zone("z")
    cluster = await nested.infra.create_cluster("c", zone.uuid)
    pw = SecretStr("pw")
    with pytest.raises(ZStackInvalidArgumentError) as bad_ip:
        await nested.infra.add_kvm_host("h", "300.1.1.1", cluster.uuid, username="root", password=pw)
    assert bad_ip.value.code == "SYS.1007" and "300.1.1.1" in bad_ip.value.details
    await nested.infra.add_kvm_host("h", VM2_IP, cluster.uuid, username="root", password=pw)
    with pytest.raises(ZStackInvalidArgumentError, match="there has been a host having managementIp"):
        await nested.infra.add_kvm_host("h2", VM2_IP, cluster.uuid, username="root", password=pw)
    with pytest.raises(ZStackOperationError) as unknown_disk:
        await nested.storage.add_shared_block_group_primary_storage("ps", zone.uuid, ["36001405deadbeef"])
    assert unknown_disk.value.code == "SYS.1006"
    assert unknown_disk.value.details.startswith("can not find disk with 36001405deadbeef as wwid, uuid or wwn")
    l2 = await nested.network.create_l2_no_vlan_network("l2", zone.uuid, "eth0")
    l3 = await nested.network.create_l3_network("l3", l2.uuid)
    await nested.network.add_ip_range(l3.uuid, "r1", "10.0.0.10", "10.0.0.20", "255.255.255.0", "10.0.0.1")
    with pytest.raises(ZStackInvalidArgumentError, match="overlaps"):
        await nested.network.add_ip_range(l3.uuid, "r2", "10.0.0.15", "10.0.0.30", "255.255.255.0", "10.0.0.1")
    with pytest.raises(ZStackInvalidArgumentError, match="can not be part of range"):
        await nested.network.add_ip_range(l3.uuid, "r3", "10.0.0.40", "10.0.0.50", "255.255.255.0", "10.0.0.45")
    with pytest.raises(ZStackInvalidArgumentError, match="resourceUuid"):
        await nested.call("CreateZone", {"name": "z", "resourceUuid": "not-a-uuid"})


async def test_vm_without_usable_storage_or_network_is_a_capacity_error(nested: ZStackClient) -> None:
    zone = await nested.infra.create_zone("z")
    cluster = await nested.infra.create_cluster("c", zone.uuid)
    await nested.infra.add_kvm_host("h", VM2_IP, cluster.uuid, username="root", password=SecretStr("pw"))
    bs = await nested.storage.add_image_store_backup_storage("bs", VM2_IP, username="root", password=SecretStr("pw"),
                                                     url="/bs")
    image = await nested.storage.add_image("img", "http://198.19.0.10/img.qcow2", [bs.uuid])
    l2 = await nested.network.create_l2_no_vlan_network("l2", zone.uuid, "eth0")
    l3 = await nested.network.create_l3_network("l3", l2.uuid)
    await nested.network.add_ip_range(l3.uuid, "r", "10.0.0.10", "10.0.0.20", "255.255.255.0", "10.0.0.1")
    with pytest.raises(ZStackCapacityError) as unattached:
        await nested.compute.create_vm_instance("vm", image_uuid=image.uuid, cpu_num=1, memory_size=GiB,
                                        l3_network_uuids=[l3.uuid])
    assert "HOST_ALLOCATION.1000" in unattached.value.codes() and "L2Networks" in unattached.value.details
    await nested.network.attach_l2_network_to_cluster(l2.uuid, cluster.uuid)
    with pytest.raises(ZStackCapacityError, match="primary storage"):
        await nested.compute.create_vm_instance("vm", image_uuid=image.uuid, cpu_num=1, memory_size=GiB,
                                        l3_network_uuids=[l3.uuid])
    assert await nested.count("QueryVmInstance") == 0


class _OnlyEth0(NoHooks):
    """Nested hooks of a host whose only interface is eth0."""

    async def has_interface(self, name: str) -> bool:
        return name == "eth0"


async def test_an_l2_network_on_an_interface_the_host_lacks_cannot_be_attached(make_client: ClientFactory) -> None:
    async with serve_simulator("nested", hooks=_OnlyEth0()) as sim:
        zs = make_client(sim.url)
        zone = await zs.infra.create_zone("z")
        cluster = await zs.infra.create_cluster("c", zone.uuid)
        await zs.infra.add_kvm_host("h", "198.19.8.3", cluster.uuid, username="root", password=SecretStr("pw"))
        wrong = await zs.network.create_l2_no_vlan_network("l2-wrong", zone.uuid, "ens3")
        with pytest.raises(ZStackOperationError) as caught:
            await zs.network.attach_l2_network_to_cluster(wrong.uuid, cluster.uuid)
        assert "failed to check physical network interfaces[names : ens3]" in caught.value.details
        right = await zs.network.create_l2_no_vlan_network("l2-right", zone.uuid, "eth0")
        assert cluster.uuid in (await zs.network.attach_l2_network_to_cluster(right.uuid,
                                                                              cluster.uuid)).attached_cluster_uuids
