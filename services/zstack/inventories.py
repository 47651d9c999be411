"""Typed ZStack inventories for what labbot reads (fields as in the SDK's ``*Inventory.java``).

Attributes are snake_case and read the camelCase JSON keys; unknown keys are kept (``model_extra``), since
every ZStack release adds fields. Numbers are parsed leniently: ZStack's published samples show longs as
floats (``1.073741824E9``), so integer fields accept whole floats. Storage inventories live in
``storage_inventories``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

log = logging.getLogger(__name__)


def _lenient_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
        number = float(value)
        return int(number) if number.is_integer() else value
    return value


Long = Annotated[int, BeforeValidator(_lenient_int)]


class Inventory(BaseModel):
    """Base of every inventory: camelCase aliases, extra fields kept, lenient numbers."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    uuid: str
    name: str | None = None
    description: str | None = None
    create_date: str | None = None
    last_op_date: str | None = None


class ZoneInventory(Inventory):
    """A zone (``ZoneInventory``)."""

    state: str | None = None
    type: str | None = None
    is_default: bool | None = None


class ClusterInventory(Inventory):
    """A cluster (``ClusterInventory``)."""

    zone_uuid: str | None = None
    state: str | None = None
    hypervisor_type: str | None = None
    type: str | None = None
    architecture: str | None = None


class HostInventory(Inventory):
    """A host, with the KVM fields (``KVMHostInventory``); ``status`` goes Connecting → Connected."""

    zone_uuid: str | None = None
    cluster_uuid: str | None = None
    management_ip: str | None = None
    hypervisor_type: str | None = None
    state: str | None = None
    status: str | None = None
    total_cpu_capacity: Long | None = None
    available_cpu_capacity: Long | None = None
    cpu_sockets: Long | None = None
    cpu_num: Long | None = None
    total_memory_capacity: Long | None = None
    available_memory_capacity: Long | None = None
    architecture: str | None = None
    username: str | None = None
    ssh_port: Long | None = None
    os_distribution: str | None = None
    os_release: str | None = None
    os_version: str | None = None


class ManagementNodeInventory(BaseModel):
    """A management node (``ManagementNodeInventory``); it has no name."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    uuid: str
    host_name: str | None = None
    join_date: str | None = None
    heart_beat: str | None = None


class IpRangeInventory(Inventory):
    """An IP range of an L3 network."""

    l3_network_uuid: str | None = None
    start_ip: str | None = None
    end_ip: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    network_cidr: str | None = None
    ip_version: Long | None = None
    prefix_len: Long | None = None
    ip_range_type: str | None = None


class L2NetworkInventory(Inventory):
    """An L2 network; ``attached_cluster_uuids`` lists the clusters it is attached to."""

    zone_uuid: str | None = None
    physical_interface: str | None = None
    type: str | None = None
    v_switch_type: str | None = None
    virtual_network_id: Long | None = None
    attached_cluster_uuids: list[str] = Field(default_factory=list)
    vni: int | None = None  # a VxlanNetwork's (L2VxlanNetworkInventory)
    pool_uuid: str | None = None  # the VXLAN pool a VxlanNetwork belongs to


class L3NetworkInventory(Inventory):
    """An L3 network with its IP ranges and network services."""

    type: str | None = None
    zone_uuid: str | None = None
    l2_network_uuid: str | None = None
    state: str | None = None
    category: str | None = None
    system: bool | None = None
    ip_version: Long | None = None
    enable_ipam: bool | None = Field(None, validation_alias=AliasChoices("enableIPAM", "enable_ipam"))
    dns: list[str] = Field(default_factory=list)
    ip_ranges: list[IpRangeInventory] = Field(default_factory=list)
    network_services: list[dict[str, Any]] = Field(default_factory=list)


class NetworkServiceProviderInventory(Inventory):
    """A network service provider (``Flat``, ``SecurityGroup``, ``VirtualRouter`` ...)."""

    type: str | None = None
    network_service_types: list[str] = Field(default_factory=list)
    attached_l2_network_uuids: list[str] = Field(default_factory=list)


class InstanceOfferingInventory(Inventory):
    """An instance offering; ``memory_size`` is in bytes."""

    cpu_num: Long | None = None
    cpu_speed: Long | None = None
    memory_size: Long | None = None
    reserved_memory_size: Long | None = None
    type: str | None = None
    allocator_strategy: str | None = None
    sort_key: Long | None = None
    state: str | None = None


class DiskOfferingInventory(Inventory):
    """A disk offering; ``disk_size`` is in bytes."""

    disk_size: Long | None = None
    type: str | None = None
    state: str | None = None
    allocator_strategy: str | None = None


class VmNicInventory(BaseModel):
    """A VM's NIC: the VM's address on ``l3_network_uuid`` is ``ip``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    uuid: str
    vm_instance_uuid: str | None = None
    l3_network_uuid: str | None = None
    ip: str | None = None
    mac: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    device_id: Long | None = None
    internal_name: str | None = None
    type: str | None = None
    state: str | None = None


class VolumeInventory(Inventory):
    """A volume; ``status`` goes NotInstantiated → Ready on attach, and Deleted before it is expunged."""

    primary_storage_uuid: str | None = None
    vm_instance_uuid: str | None = None
    disk_offering_uuid: str | None = None
    root_image_uuid: str | None = None
    install_path: str | None = None
    type: str | None = None
    format: str | None = None
    size: Long | None = None
    actual_size: Long | None = None
    device_id: Long | None = None
    state: str | None = None
    status: str | None = None
    is_shareable: bool | None = None


class VmInstanceInventory(Inventory):
    """A VM with its NICs and volumes; ``state`` goes Starting → Running, Destroyed before expunge."""

    zone_uuid: str | None = None
    cluster_uuid: str | None = None
    image_uuid: str | None = None
    host_uuid: str | None = None
    last_host_uuid: str | None = None
    instance_offering_uuid: str | None = None
    root_volume_uuid: str | None = None
    platform: str | None = None
    architecture: str | None = None
    default_l3_network_uuid: str | None = None
    type: str | None = None
    hypervisor_type: str | None = None
    memory_size: Long | None = None
    cpu_num: Long | None = None
    cpu_speed: Long | None = None
    state: str | None = None
    guest_os_type: str | None = None
    vm_nics: list[VmNicInventory] = Field(default_factory=list)
    all_volumes: list[VolumeInventory] = Field(default_factory=list)

    def ip_on(self, l3_network_uuid: str) -> str | None:
        """The VM's address on one L3 network, or None when it has no NIC there."""
        return next((n.ip for n in self.vm_nics if n.l3_network_uuid == l3_network_uuid), None)


class TagInventory(BaseModel):
    """A user or system tag attached to a resource (``UserTagInventory`` / ``SystemTagInventory``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    uuid: str
    resource_uuid: str
    resource_type: str | None = None
    tag: str
    type: str | None = None
    create_date: str | None = None
