"""Typed ZStack storage inventories: primary and backup storage, SharedBlock, iSCSI, images.

Same conventions as ``inventories``: snake_case attributes over camelCase JSON, extra fields kept, lenient
numbers (sizes are bytes).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from services.zstack.inventories import Inventory, Long

log = logging.getLogger(__name__)


class SharedBlockInventory(Inventory):
    """One disk of a SharedBlock group; ``disk_uuid`` is the LUN's wwid."""

    shared_block_group_uuid: str | None = None
    type: str | None = None
    disk_uuid: str | None = None
    state: str | None = None
    status: str | None = None
    total_capacity: Long | None = None
    available_capacity: Long | None = None


class PrimaryStorageInventory(Inventory):
    """Primary storage; for ``type == "SharedBlock"`` also its shared blocks (the group's disks)."""

    zone_uuid: str | None = None
    url: str | None = None
    total_capacity: Long | None = None
    available_capacity: Long | None = None
    total_physical_capacity: Long | None = None
    available_physical_capacity: Long | None = None
    system_used_capacity: Long | None = None
    type: str | None = None
    state: str | None = None
    status: str | None = None
    mount_path: str | None = None
    attached_cluster_uuids: list[str] = Field(default_factory=list)
    shared_blocks: list[SharedBlockInventory] = Field(default_factory=list)
    shared_block_group_type: str | None = None


class SharedBlockCandidate(BaseModel):
    """One ``GetSharedBlockCandidate`` result: a block device every connected host of the cluster sees."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    wwid: str
    vendor: str | None = None
    model: str | None = None
    wwn: str | None = None
    serial: str | None = None
    hctl: str | None = None
    type: str | None = None
    path: str | None = None
    size: Long | None = None
    source: str | None = None
    transport: str | None = None
    target_identifier: str | None = None


class IscsiLunInventory(BaseModel):
    """A LUN of an iSCSI target as the hosts saw it; ``wwid`` is what SharedBlock takes as ``diskUuid``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    uuid: str
    name: str | None = None
    wwid: str | None = None
    vendor: str | None = None
    model: str | None = None
    wwn: str | None = None
    serial: str | None = None
    type: str | None = None
    hctl: str | None = None
    path: str | None = None
    state: str | None = None
    size: Long | None = None
    source: str | None = None
    iscsi_target_uuid: str | None = None
    scsi_lun_host_refs: list[dict[str, Any]] = Field(default_factory=list)


class IscsiTargetInventory(BaseModel):
    """A target of an iSCSI server, with its LUNs."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    uuid: str
    iscsi_server_uuid: str | None = None
    iqn: str
    iscsi_luns: list[IscsiLunInventory] = Field(default_factory=list)


class IscsiServerInventory(Inventory):
    """An iSCSI server (portal) with its discovered targets and the clusters it is attached to."""

    ip: str | None = None
    port: Long | None = None
    chap_user_name: str | None = None
    state: str | None = None
    iscsi_targets: list[IscsiTargetInventory] = Field(default_factory=list)
    iscsi_cluster_refs: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def attached_cluster_uuids(self) -> list[str]:
        """Uuids of the clusters this server is attached to."""
        return [str(ref.get("clusterUuid")) for ref in self.iscsi_cluster_refs if ref.get("clusterUuid")]

    @property
    def luns(self) -> list[IscsiLunInventory]:
        """Every LUN of every target."""
        return [lun for target in self.iscsi_targets for lun in target.iscsi_luns]


class BackupStorageInventory(Inventory):
    """Backup storage; ImageStore backup storage adds ``hostname``, ``username`` and ``ssh_port``."""

    url: str | None = None
    total_capacity: Long | None = None
    available_capacity: Long | None = None
    type: str | None = None
    state: str | None = None
    status: str | None = None
    attached_zone_uuids: list[str] = Field(default_factory=list)
    hostname: str | None = None
    username: str | None = None
    ssh_port: Long | None = None


class ImageInventory(Inventory):
    """An image; ``status`` goes Downloading → Ready (or Error), Deleted before it is expunged."""

    state: str | None = None
    status: str | None = None
    size: Long | None = None
    actual_size: Long | None = None
    md5_sum: str | None = None
    url: str | None = None
    media_type: str | None = None
    guest_os_type: str | None = None
    type: str | None = None
    platform: str | None = None
    architecture: str | None = None
    format: str | None = None
    system: bool | None = None
    virtio: bool | None = None
    backup_storage_refs: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def usable(self) -> bool:
        """Whether a VM can boot from it now (Ready and Enabled)."""
        return self.status == "Ready" and self.state in (None, "Enabled")
