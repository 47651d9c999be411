"""Handlers: data volumes (NotInstantiated → Ready on attach, Deleted → expunged).

On the outer role the hooks make a volume real: attaching creates its backing file (once) and makes the VM
see it as a disk; detaching hides it; expunging deletes the file.
"""

from __future__ import annotations

import logging
from typing import Any

from sandbox.zstack_sim import allocator
from sandbox.zstack_sim.context import Ctx, api
from sandbox.zstack_sim.errors import ApiError, argerr, operr, wrong_vm_state
from sandbox.zstack_sim.views import render

log = logging.getLogger(__name__)

MAX_DATA_VOLUMES = 24  # ZStack's per-VM data volume limit on KVM


@api("CreateDataVolume")
async def create_data_volume(ctx: Ctx) -> dict[str, Any]:
    """A data volume; without ``primaryStorageUuid`` it stays NotInstantiated until it is attached."""
    name = ctx.text("name", max_len=255) or ctx.required("name")
    offering = ctx.ref("diskOfferingUuid", "disk_offering", required=False)
    size = offering["diskSize"] if offering else ctx.integer("diskSize", default=0, minimum=0)
    if not size:
        raise argerr("either diskOfferingUuid or diskSize must be set")
    storage = ctx.ref("primaryStorageUuid", "primary_storage", required=False)
    if storage is not None and storage["availableCapacity"] < size:
        raise operr(f"primary storage[uuid:{storage['uuid']}] doesn't have enough capacity[{size} bytes]")
    uuid = ctx.resource_uuid()
    record = {"uuid": uuid, "name": name, "description": ctx.text("description", max_len=2048),
              "primaryStorageUuid": storage["uuid"] if storage else None, "vmInstanceUuid": None,
              "diskOfferingUuid": offering["uuid"] if offering else None, "rootImageUuid": None,
              "installPath": f"{storage['url']}/{uuid}" if storage else None, "type": "Data", "format": "qcow2",
              "size": size, "actualSize": 0, "deviceId": None, "state": "Enabled",
              "status": "Ready" if storage else "NotInstantiated", "isShareable": False}
    await ctx.work()
    volume = ctx.create("volume", record)
    if storage is not None:
        allocator.take_storage(storage, size)
    return {"inventory": render(ctx.state, "volume", volume)}


@api("AttachDataVolumeToVm")
async def attach_data_volume_to_vm(ctx: Ctx) -> dict[str, Any]:
    """Attach to a Running or Stopped VM; a NotInstantiated volume is created on the VM's root storage."""
    volume, vm = ctx.ref("volumeUuid", "volume"), ctx.ref("vmInstanceUuid", "vm")
    assert volume is not None and vm is not None
    if volume["type"] != "Data":
        raise operr(f"volume[uuid:{volume['uuid']}] is a {volume['type']} volume, only data volumes can be attached")
    if volume["status"] not in ("Ready", "NotInstantiated") or volume["state"] != "Enabled":
        raise operr(f"data volume[uuid:{volume['uuid']}] is {volume['status']}/{volume['state']}, it can't be "
                    "attached")
    if volume["vmInstanceUuid"]:
        raise operr(f"data volume[uuid:{volume['uuid']}] has been attached to vm[uuid:{volume['vmInstanceUuid']}]")
    if vm["state"] not in ("Running", "Stopped"):
        raise wrong_vm_state(vm, ctx.action, ["Running", "Stopped"])
    attached = ctx.state.where("volume", vmInstanceUuid=vm["uuid"], type="Data")
    if len(attached) >= MAX_DATA_VOLUMES:
        raise operr(f"vm[uuid:{vm['uuid']}] already has {MAX_DATA_VOLUMES} data volumes")
    root = ctx.state.require("volume", vm["rootVolumeUuid"], "rootVolumeUuid")
    instantiate = volume["status"] == "NotInstantiated"
    storage = ctx.state.require("primary_storage", volume["primaryStorageUuid"] or root["primaryStorageUuid"],
                                "primaryStorageUuid")
    if instantiate and storage["availableCapacity"] < volume["size"]:
        raise operr(f"primary storage[uuid:{storage['uuid']}] doesn't have enough capacity[{volume['size']} bytes]")
    device = 1 + max((v["deviceId"] or 0 for v in attached), default=0)
    # Reserve before waiting, so concurrent attaches cannot both take the same device or capacity.
    ctx.state.touch(volume, vmInstanceUuid=vm["uuid"], deviceId=device)
    if instantiate:
        allocator.take_storage(storage, volume["size"])
    try:
        await ctx.work()
        await ctx.outer_hooks.volume_attached(volume["uuid"], volume["size"], vm["uuid"])
    except BaseException as err:
        ctx.state.touch(volume, vmInstanceUuid=None, deviceId=None)
        if instantiate:
            allocator.give_storage(ctx.state, storage["uuid"], volume["size"])
        if isinstance(err, Exception) and not isinstance(err, ApiError):
            raise operr(f"failed to attach volume[uuid:{volume['uuid']}] to vm[uuid:{vm['uuid']}]: {err}") from err
        raise
    if instantiate:
        ctx.state.touch(volume, status="Ready", primaryStorageUuid=storage["uuid"],
                        installPath=f"{storage['url']}/{volume['uuid']}")
    return {"inventory": render(ctx.state, "volume", volume)}


async def _detach(ctx: Ctx, volume: dict[str, Any]) -> None:
    vm_uuid = volume["vmInstanceUuid"]
    await ctx.outer_hooks.volume_detached(volume["uuid"], vm_uuid)
    ctx.state.touch(volume, vmInstanceUuid=None, deviceId=None)


@api("DetachDataVolumeFromVm")
async def detach_data_volume_from_vm(ctx: Ctx) -> dict[str, Any]:
    """Detach a data volume from its VM (the data stays)."""
    volume = ctx.ref("uuid", "volume")
    assert volume is not None
    if not volume["vmInstanceUuid"]:
        raise operr(f"data volume[uuid:{volume['uuid']}] is not attached to any vm")
    wanted = ctx.param("vmUuid")
    if wanted and wanted != volume["vmInstanceUuid"]:
        raise argerr(f"data volume[uuid:{volume['uuid']}] is not attached to vm[uuid:{wanted}]")
    await ctx.work()
    await _detach(ctx, volume)
    return {"inventory": render(ctx.state, "volume", volume)}


@api("UpdateVolume")
async def update_volume(ctx: Ctx) -> dict[str, Any]:
    """Rename a volume or change its description (zstack ``VolumeBase`` ``handle(APIUpdateVolumeMsg)``)."""
    volume = ctx.ref("uuid", "volume")
    assert volume is not None
    name, description = ctx.text("name", max_len=255), ctx.text("description", max_len=2048)
    if name is not None and not name.strip():
        raise argerr("name cannot be an empty string")
    await ctx.work()
    ctx.state.touch(volume, **{k: v for k, v in (("name", name), ("description", description)) if v is not None})
    return {"inventory": render(ctx.state, "volume", volume)}


@api("DeleteDataVolume")
async def delete_data_volume(ctx: Ctx) -> dict[str, Any]:
    """Deletion policy Delay: detach if attached, then status Deleted (still expungeable)."""
    ctx.choice("deleteMode", ("Permissive", "Enforcing"), "Permissive")
    volume = ctx.ref("uuid", "volume")
    assert volume is not None
    if volume["type"] != "Data":
        raise operr(f"volume[uuid:{volume['uuid']}] is a root volume; delete its vm instead")
    if volume["status"] == "Deleted":
        raise operr(f"data volume[uuid:{volume['uuid']}] has been deleted")
    await ctx.work()
    if volume["vmInstanceUuid"]:
        await _detach(ctx, volume)
    ctx.state.touch(volume, status="Deleted")
    return {}


@api("ExpungeDataVolume")
async def expunge_data_volume(ctx: Ctx) -> dict[str, Any]:
    """Remove a Deleted data volume and its storage for good."""
    volume = ctx.ref("uuid", "volume")
    assert volume is not None
    if volume["status"] != "Deleted":
        raise operr(f"the volume[uuid:{volume['uuid']}] is not deleted yet, can't expunge it")
    await ctx.work()
    await ctx.outer_hooks.volume_expunged(volume["uuid"])
    if volume["primaryStorageUuid"]:
        allocator.give_storage(ctx.state, volume["primaryStorageUuid"], int(volume["size"]))
    ctx.state.remove("volume", volume["uuid"])
    return {}
