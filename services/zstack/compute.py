"""Typed client methods for offerings, VMs and data volumes.

Teardown methods are idempotent so the engine can re-run a half-finished destroy: destroying a VM that is
already Destroyed or gone does nothing, and expunging one that is not yet Destroyed destroys it first (the
same for volumes and Deleted).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence

from pydantic import SecretStr

from services.zstack.errors import ZStackInvalidArgumentError, ZStackOperationError, ZStackTimeoutError
from services.zstack.inventories import (
    InstanceOfferingInventory,
    VmInstanceInventory,
    VolumeInventory,
)
from services.zstack.resources import Resources
from services.zstack.wire import deadline_in

log = logging.getLogger(__name__)

_VM_TRANSITIONAL = frozenset({"Starting", "Stopping", "Rebooting", "Destroying", "Expunging", "Migrating"})
_VM_FAILED = frozenset({"Error", "Crashed", "Unknown"})
_DEFAULT_WAIT = 1800.0


class ComputeApi(Resources):
    """Instance and disk offerings, VM instances and data volumes."""

    # --- offerings -----------------------------------------------------------------------------------

    async def create_instance_offering(self, name: str, cpu_num: int, memory_size: int, *,
                                       description: str | None = None, resource_uuid: str | None = None,
                                       user_tags: Sequence[str] | None = None,
                                       deadline: float | None = None) -> InstanceOfferingInventory:
        """Create an instance offering; ``memory_size`` is in bytes (idempotent on ``resource_uuid``)."""
        params = {"name": name, "cpuNum": cpu_num, "memorySize": memory_size, "description": description}
        return await self._create("CreateInstanceOffering", "QueryInstanceOffering", InstanceOfferingInventory,
                                  params, resource_uuid=resource_uuid, user_tags=user_tags, deadline=deadline)

    async def find_instance_offering_by_name(self, name: str, *,
                                             deadline: float | None = None) -> InstanceOfferingInventory | None:
        """The instance offering named ``name`` (an Enabled one wins over others), or None."""
        return await self._find_by_name("QueryInstanceOffering", InstanceOfferingInventory, name, "instance offering",
                                        usable=lambda o: o.state in (None, "Enabled"), deadline=deadline)

    # --- VMs -----------------------------------------------------------------------------------------

    async def create_vm_instance(
        self, name: str, *, image_uuid: str, l3_network_uuids: Sequence[str],
        instance_offering_uuid: str | None = None, cpu_num: int | None = None, memory_size: int | None = None,
        default_l3_network_uuid: str | None = None, zone_uuid: str | None = None, cluster_uuid: str | None = None,
        host_uuid: str | None = None, primary_storage_uuid_for_root_volume: str | None = None,
        strategy: str = "InstantStart", description: str | None = None, ssh_public_key: str | None = None,
        root_password: SecretStr | None = None, system_tags: Sequence[str] | None = None,
        user_tags: Sequence[str] | None = None, resource_uuid: str | None = None, deadline: float | None = None,
    ) -> VmInstanceInventory:
        """Create and start a VM; returns it Running (for ``InstantStart``). Idempotent on ``resource_uuid``:
        a VM an earlier attempt left Starting is waited for rather than created again.

        ``ssh_public_key`` and ``root_password`` become the ``sshkey::`` / ``rootPassword::`` system tags.
        """
        if not instance_offering_uuid and not (cpu_num and memory_size):
            raise ZStackInvalidArgumentError("SYS.1007", "One or more API argument is invalid",
                                             "give instance_offering_uuid, or cpu_num and memory_size",
                                             action="CreateVmInstance")
        if not l3_network_uuids:
            raise ZStackInvalidArgumentError("SYS.1007", "One or more API argument is invalid",
                                             "l3_network_uuids must name at least one L3 network",
                                             action="CreateVmInstance")
        tags = list(system_tags or [])
        if ssh_public_key:
            tags.append(f"sshkey::{ssh_public_key.strip()}")
        if root_password is not None:
            tags.append(f"rootPassword::{root_password.get_secret_value()}")
        params = {
            "name": name, "imageUuid": image_uuid, "instanceOfferingUuid": instance_offering_uuid,
            "cpuNum": cpu_num, "memorySize": memory_size, "l3NetworkUuids": list(l3_network_uuids),
            "defaultL3NetworkUuid": default_l3_network_uuid or l3_network_uuids[0], "zoneUuid": zone_uuid,
            "clusterUuid": cluster_uuid, "hostUuid": host_uuid,
            "primaryStorageUuidForRootVolume": primary_storage_uuid_for_root_volume, "strategy": strategy,
            "description": description,
        }
        vm = await self._create("CreateVmInstance", "QueryVmInstance", VmInstanceInventory, params,
                                resource_uuid=resource_uuid, system_tags=tags, user_tags=user_tags, deadline=deadline,
                                secrets=(root_password,) if root_password is not None else ())
        if vm.state in _VM_TRANSITIONAL:
            vm = await self.wait_vm_state(vm.uuid, {"Running", "Stopped", "Created"}, deadline=deadline)
        return vm

    async def get_vm(self, uuid: str, *, deadline: float | None = None) -> VmInstanceInventory | None:
        """One VM by uuid (with NICs and volumes), or None when it does not exist (or was expunged)."""
        return await self._get("QueryVmInstance", VmInstanceInventory, uuid, deadline=deadline)

    async def find_vms_by_user_tag(self, pattern: str, *, deadline: float | None = None) -> list[VmInstanceInventory]:
        """VMs carrying a user tag that matches ``pattern`` (SQL LIKE), e.g. ``labbot::lab::%``."""
        return [VmInstanceInventory.model_validate(v)
                for v in await self.api.find_by_user_tag("QueryVmInstance", pattern, deadline=deadline)]

    async def rename_vm(self, uuid: str, name: str, *, deadline: float | None = None) -> VmInstanceInventory:
        """Give a VM a new name (UpdateVmInstance; its uuid, tags and state stay)."""
        result = await self.api.call("UpdateVmInstance", {"uuid": uuid, "name": name}, deadline=deadline)
        return VmInstanceInventory.model_validate(result["inventory"])

    async def rename_volume(self, uuid: str, name: str, *, deadline: float | None = None) -> VolumeInventory:
        """Give a volume a new name (UpdateVolume)."""
        result = await self.api.call("UpdateVolume", {"uuid": uuid, "name": name}, deadline=deadline)
        return VolumeInventory.model_validate(result["inventory"])

    async def start_vm(self, uuid: str, *, deadline: float | None = None) -> VmInstanceInventory:
        """Start a stopped VM (no-op when it is Running)."""
        vm = await self._require("QueryVmInstance", VmInstanceInventory, uuid, "vm", deadline=deadline)
        if vm.state == "Running":
            return vm
        result = await self.api.call("StartVmInstance", {"uuid": uuid}, deadline=deadline)
        return VmInstanceInventory.model_validate(result["inventory"])

    async def stop_vm(self, uuid: str, *, force: bool = False, deadline: float | None = None) -> VmInstanceInventory:
        """Stop a VM, gracefully unless ``force`` (no-op when it is Stopped)."""
        vm = await self._require("QueryVmInstance", VmInstanceInventory, uuid, "vm", deadline=deadline)
        if vm.state == "Stopped":
            return vm
        result = await self.api.call("StopVmInstance", {"uuid": uuid, "type": "cold" if force else "grace"},
                                 deadline=deadline)
        return VmInstanceInventory.model_validate(result["inventory"])

    async def expunge_vm(self, uuid: str, *, deadline: float | None = None) -> bool:
        """Remove a VM for good, destroying it first if needed; False when it was already gone."""
        vm = await self.get_vm(uuid, deadline=deadline)
        if vm is None:
            return False
        if vm.state != "Destroyed":
            await self.api.call("DestroyVmInstance", {"uuid": uuid}, deadline=deadline)
        await self.api.call("ExpungeVmInstance", {"uuid": uuid}, deadline=deadline)
        return True

    async def wait_vm_state(self, uuid: str, states: Collection[str], *,
                            deadline: float | None = None) -> VmInstanceInventory:
        """Poll the VM until its state is one of ``states``; a failed state or a vanished VM raises."""
        until = deadline if deadline is not None else deadline_in(_DEFAULT_WAIT)
        for delay in self.api.poll_policy.delays():
            vm = await self._require("QueryVmInstance", VmInstanceInventory, uuid, "vm", deadline=until)
            if vm.state in states:
                return vm
            if vm.state in _VM_FAILED or (vm.state == "Destroyed" and "Destroyed" not in states):
                raise ZStackOperationError("VM.1010", "VM is not in state that allows required operation",
                                           f"vm[uuid:{uuid}] is {vm.state}, expected {sorted(states)}",
                                           action="QueryVmInstance")
            if time.monotonic() + delay >= until:
                break
            await asyncio.sleep(delay)
        raise ZStackTimeoutError("sdk.1001", "polling timeout",
                                 f"vm[uuid:{uuid}] did not reach {sorted(states)} in time", action="QueryVmInstance")

    # --- data volumes --------------------------------------------------------------------------------

    async def create_data_volume(self, name: str, *, disk_size: int | None = None,
                                 disk_offering_uuid: str | None = None, primary_storage_uuid: str | None = None,
                                 description: str | None = None, system_tags: Sequence[str] | None = None,
                                 resource_uuid: str | None = None, user_tags: Sequence[str] | None = None,
                                 deadline: float | None = None) -> VolumeInventory:
        """Create a data volume of ``disk_size`` bytes (or an offering's size); without primary storage it is
        NotInstantiated until attached. Idempotent on ``resource_uuid``."""
        if not disk_size and not disk_offering_uuid:
            raise ZStackInvalidArgumentError("SYS.1007", "One or more API argument is invalid",
                                             "give disk_size or disk_offering_uuid", action="CreateDataVolume")
        params = {"name": name, "diskSize": disk_size, "diskOfferingUuid": disk_offering_uuid,
                  "primaryStorageUuid": primary_storage_uuid, "description": description}
        return await self._create("CreateDataVolume", "QueryVolume", VolumeInventory, params,
                                  resource_uuid=resource_uuid, system_tags=system_tags, user_tags=user_tags,
                                  deadline=deadline)

    async def get_volume(self, uuid: str, *, deadline: float | None = None) -> VolumeInventory | None:
        """One volume by uuid, or None when it does not exist (or was expunged)."""
        return await self._get("QueryVolume", VolumeInventory, uuid, deadline=deadline)

    async def find_volumes_by_user_tag(self, pattern: str, *, deadline: float | None = None) -> list[VolumeInventory]:
        """Volumes carrying a user tag that matches ``pattern`` (SQL LIKE)."""
        return [VolumeInventory.model_validate(v)
                for v in await self.api.find_by_user_tag("QueryVolume", pattern, deadline=deadline)]

    async def attach_data_volume(self, volume_uuid: str, vm_uuid: str, *,
                                 deadline: float | None = None) -> VolumeInventory:
        """Attach a data volume to a VM (no-op when it is attached to that VM already)."""
        volume = await self._require("QueryVolume", VolumeInventory, volume_uuid, "volume", deadline=deadline)
        if volume.vm_instance_uuid == vm_uuid:
            return volume
        result = await self.api.call("AttachDataVolumeToVm", {"volumeUuid": volume_uuid, "vmInstanceUuid": vm_uuid},
                                 deadline=deadline)
        return VolumeInventory.model_validate(result["inventory"])

    async def expunge_data_volume(self, uuid: str, *, deadline: float | None = None) -> bool:
        """Remove a data volume for good, deleting it first if needed; False when it was already gone."""
        volume = await self.get_volume(uuid, deadline=deadline)
        if volume is None:
            return False
        if volume.status != "Deleted":
            await self.api.call("DeleteDataVolume", {"uuid": uuid}, deadline=deadline)
        await self.api.call("ExpungeDataVolume", {"uuid": uuid}, deadline=deadline)
        return True

    # --- resource configuration ----------------------------------------------------------------------

    async def update_resource_config(self, category: str, name: str, resource_uuid: str, value: str, *,
                                     deadline: float | None = None) -> None:
        """Bind a global config's value to one resource (``UpdateResourceConfig``), e.g. ``kvm/vm.cpuMode``
        on a VM; a VM reads it when it starts."""
        await self.api.call("UpdateResourceConfig", {"category": category, "name": name, "resourceUuid": resource_uuid,
                                                 "value": value}, deadline=deadline)

    async def get_resource_config(self, category: str, name: str, resource_uuid: str, *,
                                  deadline: float | None = None) -> str | None:
        """The value of a global config that applies to one resource (its own, or what it inherits)."""
        result = await self.api.call("GetResourceConfig", {"category": category, "name": name,
                                                       "resourceUuid": resource_uuid}, deadline=deadline)
        value = result.get("value")
        return value if isinstance(value, str) else None

