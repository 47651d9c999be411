"""Handlers: instance/disk offerings and VM instances (create, start, stop, destroy, expunge).

A VM is visible from the moment it is created (state Starting) until it is expunged; a failed create is
rolled back completely, as ZStack rolls back its create flow, so a VM that exists was created successfully
or is still starting. The outer role's hooks make a started VM a real host (``OuterHooks.vm_started``).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, NoReturn

from sandbox.zstack_sim import allocator, ipam
from sandbox.zstack_sim.api_config import NESTED_CPU_MODES, effective_value
from sandbox.zstack_sim.context import Ctx, api, tag_values
from sandbox.zstack_sim.errors import ApiError, argerr, no_host, operr, wrong_vm_state
from sandbox.zstack_sim.hooks import NicPlan, VmPlan
from sandbox.zstack_sim.store import SimState, new_uuid
from sandbox.zstack_sim.views import render

log = logging.getLogger(__name__)

_SECRET_TAGS = ("rootPassword::",)  # kept on the VM for the hook, never stored as a queryable tag


@api("CreateInstanceOffering")
async def create_instance_offering(ctx: Ctx) -> dict[str, Any]:
    """An instance offering (``memorySize`` in bytes)."""
    name = ctx.text("name", max_len=255) or ctx.required("name")
    cpu = ctx.integer("cpuNum", minimum=1) or ctx.required("cpuNum")
    memory = ctx.integer("memorySize", minimum=16 * 1024**2) or ctx.required("memorySize")
    record = {"uuid": ctx.resource_uuid(), "name": name, "description": ctx.text("description", max_len=2048),
              "cpuNum": cpu, "cpuSpeed": 0, "memorySize": memory,
              "reservedMemorySize": ctx.integer("reservedMemorySize", default=0, minimum=0), "type": "UserVm",
              "allocatorStrategy": ctx.text("allocatorStrategy") or "LeastVmPreferredHostAllocatorStrategy",
              "sortKey": ctx.integer("sortKey", default=0), "state": "Enabled"}
    await ctx.work()
    return {"inventory": render(ctx.state, "instance_offering", ctx.create("instance_offering", record))}


@api("DeleteInstanceOffering")
async def delete_instance_offering(ctx: Ctx) -> dict[str, Any]:
    """Remove an instance offering (VMs made from it keep running)."""
    offering = ctx.ref("uuid", "instance_offering")
    assert offering is not None
    await ctx.work()
    ctx.state.remove("instance_offering", offering["uuid"])
    return {}


@api("CreateDiskOffering")
async def create_disk_offering(ctx: Ctx) -> dict[str, Any]:
    """A disk offering (``diskSize`` in bytes)."""
    name = ctx.text("name", max_len=255) or ctx.required("name")
    size = ctx.integer("diskSize", minimum=1) or ctx.required("diskSize")
    record = {"uuid": ctx.resource_uuid(), "name": name, "description": ctx.text("description", max_len=2048),
              "diskSize": size, "type": ctx.choice("type", ("zstack",), "zstack"), "state": "Enabled",
              "allocatorStrategy": ctx.text("allocationStrategy"), "sortKey": ctx.integer("sortKey", default=0)}
    await ctx.work()
    return {"inventory": render(ctx.state, "disk_offering", ctx.create("disk_offering", record))}


def mac_for(nic_uuid: str) -> str:
    """A stable locally-administered MAC for a NIC (``fa:`` like ZStack's)."""
    digest = hashlib.sha256(nic_uuid.encode()).hexdigest()
    return "fa:" + ":".join(digest[i:i + 2] for i in range(0, 10, 2))


def vm_plan(state: SimState, vm: dict[str, Any]) -> VmPlan:
    """What the hooks need to make the VM real: its NICs with their addresses, keys, password, user data.

    The SSH key, root password and user data reach a real guest only as cloud-init user data, which ZStack
    serves only through the *default* L3 network's ``Userdata`` service (zstackio/zstack
    ``UserdataExtension.findProvider``: no such service on the default L3 and the VM silently gets none).
    """
    nics = []
    for nic in sorted(state.where("nic", vmInstanceUuid=vm["uuid"]), key=lambda n: n["deviceId"]):
        l3 = state.records["l3"].get(nic["l3NetworkUuid"], {})
        nics.append(NicPlan(nic["l3NetworkUuid"], l3.get("name", ""), nic["ip"], nic["netmask"], nic["gateway"],
                            nic["l3NetworkUuid"] == vm["defaultL3NetworkUuid"]))
    nested = effective_value(state, "kvm", "vm.cpuMode", vm) in NESTED_CPU_MODES
    image = state.records["image"].get(vm.get("imageUuid") or "", {})
    if not serves_userdata(state, vm["defaultL3NetworkUuid"]):
        log.info("vm %s: its default L3 network has no Userdata service; no key, password or user data",
                 vm["uuid"])
        return VmPlan(vm["uuid"], vm["name"], nics, nested_virtualization=nested, image_name=image.get("name", ""),
                      image_uuid=image.get("uuid", ""))
    tags = state.tags_of(vm["uuid"], "System")
    user_data = tag_values(tags, "userdata")
    return VmPlan(vm["uuid"], vm["name"], nics, ssh_public_keys=tag_values(tags, "sshkey"),
                  root_password=vm.get("_rootPassword"), user_data=user_data[0] if user_data else None,
                  nested_virtualization=nested, image_name=image.get("name", ""), image_uuid=image.get("uuid", ""))


def serves_userdata(state: SimState, l3_uuid: str | None) -> bool:
    """Whether an L3 network has the Userdata service of a provider that implements it (Flat)."""
    l3 = state.get("l3", l3_uuid)
    if l3 is None:
        return False
    for service in l3.get("networkServices") or []:
        provider = state.get("provider", service.get("networkServiceProviderUuid"))
        if service.get("networkServiceType") == "Userdata" and provider is not None and provider["type"] == "Flat":
            return True
    return False


@api("CreateVmInstance")
async def create_vm_instance(ctx: Ctx) -> dict[str, Any]:
    """Allocate a host, storage and addresses, then start the VM (Starting → Running)."""
    name = ctx.text("name", max_len=255) or ctx.required("name")
    strategy = ctx.choice("strategy", ("InstantStart", "JustCreate", "CreateStopped"), "InstantStart")
    ctx.choice("type", ("UserVm", "ApplianceVm"), "UserVm")
    offering = ctx.ref("instanceOfferingUuid", "instance_offering", required=False)
    cpu = offering["cpuNum"] if offering else ctx.integer("cpuNum", minimum=1)
    memory = offering["memorySize"] if offering else ctx.integer("memorySize", minimum=1)
    if not cpu or not memory:
        raise argerr("instanceOfferingUuid or cpuNum and memorySize must be set")
    image = ctx.ref("imageUuid", "image")
    assert image is not None
    if image["status"] != "Ready" or image["state"] != "Enabled":
        raise argerr(f"image[uuid:{image['uuid']}] is not ready to use, its status is {image['status']} and state "
                     f"is {image['state']}")
    if image["mediaType"] != "RootVolumeTemplate":
        raise argerr(f"image[uuid:{image['uuid']}] is a {image['mediaType']}; a root disk offering is required")
    l3s = ctx.uuid_list("l3NetworkUuids", "l3")
    default_l3 = ctx.param("defaultL3NetworkUuid") or l3s[0]["uuid"]
    if default_l3 not in [l3["uuid"] for l3 in l3s]:
        raise argerr(f"defaultL3NetworkUuid[{default_l3}] is not in l3NetworkUuids{[l3['uuid'] for l3 in l3s]}")
    static = {v.split("::")[0]: v.split("::", 1)[1] for v in tag_values(ctx.system_tags, "staticIp") if "::" in v}
    uuid = ctx.resource_uuid()
    host, storage = allocator.choose(
        ctx.state, cpu=cpu, memory=memory, root_size=image["size"], l3s=l3s, zone_uuid=ctx.param("zoneUuid"),
        cluster_uuid=ctx.param("clusterUuid"), host_uuid=ctx.param("hostUuid"),
        storage_uuid=ctx.param("primaryStorageUuidForRootVolume"))
    addresses: list[tuple[str, dict[str, Any]]] = []
    for l3 in l3s:
        ip, ip_range = ipam.allocate(ctx.state, l3, static.get(l3["uuid"]))
        if any(ip == taken for taken, _ in addresses):
            raise argerr(f"IP[{ip}] is requested twice")
        addresses.append((ip, ip_range))
    # Everything is checked: from here the records are written in one synchronous step.
    secret = [t for t in ctx.system_tags if t.startswith(_SECRET_TAGS)]
    ctx.system_tags = [t for t in ctx.system_tags if t not in secret]
    root_uuid = new_uuid()
    running = strategy == "InstantStart"
    vm = ctx.create("vm", {
        "uuid": uuid, "name": name, "description": ctx.text("description", max_len=2048),
        "zoneUuid": host["zoneUuid"], "clusterUuid": host["clusterUuid"], "imageUuid": image["uuid"],
        "hostUuid": host["uuid"] if running else None, "lastHostUuid": host["uuid"],
        "instanceOfferingUuid": offering["uuid"] if offering else None, "rootVolumeUuid": root_uuid,
        "platform": image["platform"], "architecture": image["architecture"], "defaultL3NetworkUuid": default_l3,
        "type": "UserVm", "hypervisorType": "KVM", "memorySize": memory, "cpuNum": cpu, "cpuSpeed": 0,
        "allocatorStrategy": "LeastVmPreferredHostAllocatorStrategy",
        "state": "Starting" if running else ("Stopped" if strategy == "CreateStopped" else "Created"),
        "guestOsType": image.get("guestOsType"),
        "_rootPassword": tag_values(secret, "rootPassword")[0] if secret else None,
    })
    for index, (l3, (ip, ip_range)) in enumerate(zip(l3s, addresses, strict=True)):
        nic_uuid = new_uuid()
        ctx.state.add("nic", {
            "uuid": nic_uuid, "vmInstanceUuid": uuid, "l3NetworkUuid": l3["uuid"], "ip": ip, "mac": mac_for(nic_uuid),
            "netmask": ip_range["netmask"], "gateway": ip_range["gateway"], "ipVersion": 4, "deviceId": index,
            "internalName": f"vnic{uuid[:6]}.{index}", "type": "VNIC", "state": "enable",
            "usedIps": [{"uuid": new_uuid(), "ipRangeUuid": ip_range["uuid"], "l3NetworkUuid": l3["uuid"],
                         "ipVersion": 4, "ip": ip, "netmask": ip_range["netmask"], "gateway": ip_range["gateway"],
                         "vmNicUuid": nic_uuid}]})
    ctx.state.add("volume", {
        "uuid": root_uuid, "name": f"ROOT-for-{name}", "description": None, "primaryStorageUuid": storage["uuid"],
        "vmInstanceUuid": uuid, "rootImageUuid": image["uuid"], "installPath": f"{storage['url']}/{root_uuid}",
        "type": "Root", "format": image["format"], "size": image["size"], "actualSize": image["actualSize"],
        "deviceId": 0, "state": "Enabled", "status": "Ready", "isShareable": False})
    allocator.take_storage(storage, image["size"])
    if not running:
        return {"inventory": render(ctx.state, "vm", vm)}
    allocator.reserve_host(host, cpu, memory)
    try:
        await ctx.work()
        await ctx.outer_hooks.vm_started(vm_plan(ctx.state, vm))
    except BaseException as err:
        await _discard(ctx, vm)
        _fail(err, f"failed to start vm[uuid:{uuid}, name:{name}]")
    ctx.state.touch(vm, state="Running")
    return {"inventory": render(ctx.state, "vm", vm)}


async def _discard(ctx: Ctx, vm: dict[str, Any]) -> None:
    """Roll a failed create back: capacity, addresses, root volume and the VM itself."""
    allocator.release_host(ctx.state, vm["hostUuid"], vm["cpuNum"], vm["memorySize"])
    _drop_root_volume(ctx.state, vm)
    for nic in ctx.state.where("nic", vmInstanceUuid=vm["uuid"]):
        ctx.state.remove("nic", nic["uuid"])
    ctx.state.remove("vm", vm["uuid"])
    try:
        await ctx.outer_hooks.vm_expunged(vm["uuid"])
    except Exception as err:  # the create already failed; a failed clean-up must not hide why
        log.warning("clean-up of failed vm %s: %s", vm["uuid"], err)


def _drop_root_volume(state: SimState, vm: dict[str, Any]) -> None:
    root = state.get("volume", vm["rootVolumeUuid"])
    if root is not None:
        allocator.give_storage(state, root["primaryStorageUuid"], int(root["size"]))
        state.remove("volume", root["uuid"])


def _vm(ctx: Ctx, allowed: list[str]) -> dict[str, Any]:
    vm = ctx.ref("uuid", "vm")
    assert vm is not None
    if vm["state"] not in allowed:
        raise wrong_vm_state(vm, ctx.action, allowed)
    return vm


@api("StartVmInstance")
async def start_vm_instance(ctx: Ctx) -> dict[str, Any]:
    """Start a Stopped VM on its last host: Starting → Running."""
    vm = _vm(ctx, ["Stopped", "Created"])
    host = ctx.state.get("host", vm["lastHostUuid"])
    if (host is None or host["availableCpuCapacity"] < vm["cpuNum"]
            or host["availableMemoryCapacity"] < vm["memorySize"]):
        raise no_host(f"no host having cpu[{vm['cpuNum']}], memory[{vm['memorySize']} bytes] found")
    allocator.reserve_host(host, vm["cpuNum"], vm["memorySize"])
    ctx.state.touch(vm, state="Starting", hostUuid=host["uuid"])
    try:
        await ctx.work()
        await ctx.outer_hooks.vm_started(vm_plan(ctx.state, vm))
    except BaseException as err:
        allocator.release_host(ctx.state, host["uuid"], vm["cpuNum"], vm["memorySize"])
        ctx.state.touch(vm, state="Stopped", hostUuid=None)
        _fail(err, f"failed to start vm[uuid:{vm['uuid']}]")
    ctx.state.touch(vm, state="Running")
    return {"inventory": render(ctx.state, "vm", vm)}


@api("UpdateVmInstance")
async def update_vm_instance(ctx: Ctx) -> dict[str, Any]:
    """Rename a VM or change its description, in any state but Destroyed (zstack ``VmInstanceBase``
    ``handle(APIUpdateVmInstanceMsg)``: fields not given stay)."""
    vm = _vm(ctx, ["Created", "Starting", "Running", "Stopping", "Stopped", "Rebooting", "Migrating", "Unknown"])
    name, description = ctx.text("name", max_len=255), ctx.text("description", max_len=2048)
    if name is not None and not name.strip():
        raise argerr("name cannot be an empty string")
    await ctx.work()
    changes = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
    ctx.state.touch(vm, **changes)
    return {"inventory": render(ctx.state, "vm", vm)}


@api("StopVmInstance")
async def stop_vm_instance(ctx: Ctx) -> dict[str, Any]:
    """Stop a Running VM (Stopping → Stopped); its host capacity is released."""
    ctx.choice("type", ("grace", "cold"), "grace")
    vm = _vm(ctx, ["Running"])
    ctx.state.touch(vm, state="Stopping")
    try:
        await ctx.work()
        await ctx.outer_hooks.vm_stopped(vm["uuid"])
    except BaseException as err:
        ctx.state.touch(vm, state="Running")
        _fail(err, f"failed to stop vm[uuid:{vm['uuid']}]")
    allocator.release_host(ctx.state, vm["hostUuid"], vm["cpuNum"], vm["memorySize"])
    ctx.state.touch(vm, state="Stopped", hostUuid=None)
    return {"inventory": render(ctx.state, "vm", vm)}


@api("DestroyVmInstance")
async def destroy_vm_instance(ctx: Ctx) -> dict[str, Any]:
    """Destroy a VM (deletion policy Delay): it stops, its data volumes are detached, its addresses and
    capacity are released, and it stays Destroyed until expunged."""
    ctx.choice("deleteMode", ("Permissive", "Enforcing"), "Permissive")
    vm = _vm(ctx, ["Created", "Starting", "Running", "Stopping", "Stopped", "Rebooting", "Paused", "Error",
                   "Unknown", "Crashed"])
    was_running, before = vm["hostUuid"] is not None, vm["state"]
    ctx.state.touch(vm, state="Destroying")
    try:
        await ctx.work()
        if was_running:
            await ctx.outer_hooks.vm_stopped(vm["uuid"])
    except BaseException as err:
        ctx.state.touch(vm, state=before)
        _fail(err, f"failed to destroy vm[uuid:{vm['uuid']}]")
    if was_running:
        allocator.release_host(ctx.state, vm["hostUuid"], vm["cpuNum"], vm["memorySize"])
    for volume in ctx.state.where("volume", vmInstanceUuid=vm["uuid"], type="Data"):
        await ctx.outer_hooks.volume_detached(volume["uuid"], vm["uuid"])
        ctx.state.touch(volume, vmInstanceUuid=None, deviceId=None)
    for nic in ctx.state.where("nic", vmInstanceUuid=vm["uuid"]):
        ctx.state.touch(nic, ip=None, usedIps=[])
    ctx.state.touch(vm, state="Destroyed", hostUuid=None)
    return {}


@api("ExpungeVmInstance")
async def expunge_vm_instance(ctx: Ctx) -> dict[str, Any]:
    """Remove a Destroyed VM, its NICs and its root volume for good."""
    vm = _vm(ctx, ["Destroyed"])
    ctx.state.touch(vm, state="Expunging")
    try:
        await ctx.work()
        await ctx.outer_hooks.vm_expunged(vm["uuid"])
    except BaseException as err:
        ctx.state.touch(vm, state="Destroyed")
        _fail(err, f"failed to expunge vm[uuid:{vm['uuid']}]")
    _drop_root_volume(ctx.state, vm)
    for nic in ctx.state.where("nic", vmInstanceUuid=vm["uuid"]):
        ctx.state.remove("nic", nic["uuid"])
    ctx.state.remove("vm", vm["uuid"])
    return {}


def _fail(err: BaseException, what: str) -> NoReturn:
    """Re-raise a hook's failure as the job's error: ApiErrors and cancellations as they are, anything else
    as SYS.1006 naming what failed."""
    if isinstance(err, ApiError) or not isinstance(err, Exception):
        raise err
    raise operr(f"{what}: {err}") from err
