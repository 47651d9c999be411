"""Typed client methods for iSCSI servers, SharedBlock and other primary storage, backup storage and images.

The nested lab's storage is built in the order of zstack-api.md §15: AddIscsiServer →
AttachIscsiServerToCluster → GetSharedBlockCandidate → AddSharedBlockGroupPrimaryStorage (disk uuids are
the LUNs' wwids, with ``forceWipe``) → AttachPrimaryStorageToCluster. Attach methods are idempotent: when
the attachment already exists they return the current inventory instead of calling ZStack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pydantic import SecretStr

from services.zstack.errors import ZStackError, ZStackInvalidArgumentError
from services.zstack.query import eq, ne
from services.zstack.resources import Resources
from services.zstack.storage_inventories import (
    BackupStorageInventory,
    ImageInventory,
    IscsiServerInventory,
    PrimaryStorageInventory,
    SharedBlockCandidate,
)

log = logging.getLogger(__name__)


class StorageApi(Resources):
    """iSCSI, SharedBlock, primary/backup storage and images."""

    # --- iSCSI ---------------------------------------------------------------------------------------

    async def add_iscsi_server(self, ip: str, *, port: int = 3260, name: str | None = None,
                               chap_user_name: str | None = None, chap_user_password: SecretStr | None = None,
                               resource_uuid: str | None = None, user_tags: Sequence[str] | None = None,
                               deadline: float | None = None) -> IscsiServerInventory:
        """Register an iSCSI portal (ZStack discovers its targets). Idempotent on the portal itself: a server
        already registered with this ip and port is returned, since whether AddIscsiServer keeps the caller's
        ``resourceUuid`` cannot be checked (its server side is not open source)."""
        existing = await self._list("QueryIscsiServer", IscsiServerInventory, [eq("ip", ip), eq("port", port)],
                                    deadline=deadline)
        if existing:
            return existing[0]
        params = {"ip": ip, "port": port, "name": name, "chapUserName": chap_user_name,
                  "chapUserPassword": chap_user_password.get_secret_value() if chap_user_password else None}
        return await self._create("AddIscsiServer", "QueryIscsiServer", IscsiServerInventory, params,
                                  resource_uuid=resource_uuid, user_tags=user_tags, deadline=deadline,
                                  secrets=(chap_user_password,) if chap_user_password else ())

    async def attach_iscsi_server_to_cluster(self, iscsi_server_uuid: str, cluster_uuid: str, *,
                                             deadline: float | None = None) -> IscsiServerInventory:
        """Log every host of the cluster in to the server's targets (no-op when already attached)."""
        server = await self._require("QueryIscsiServer", IscsiServerInventory, iscsi_server_uuid, "iscsi server",
                                     deadline=deadline)
        if cluster_uuid in server.attached_cluster_uuids:
            return server
        result = await self.api.call("AttachIscsiServerToCluster", {"uuid": iscsi_server_uuid,
                                                                "clusterUuid": cluster_uuid}, deadline=deadline)
        return IscsiServerInventory.model_validate(result["inventory"])

    async def get_shared_block_candidates(self, cluster_uuid: str, *,
                                          deadline: float | None = None) -> list[SharedBlockCandidate]:
        """Block devices every connected host of the cluster sees and no SharedBlock uses yet."""
        result = await self.api.call("GetSharedBlockCandidate", {"clusterUuid": cluster_uuid}, deadline=deadline)
        return [SharedBlockCandidate.model_validate(item) for item in result.get("results") or []]

    # --- primary storage -----------------------------------------------------------------------------

    async def add_shared_block_group_primary_storage(
        self, name: str, zone_uuid: str, disk_uuids: Sequence[str], *, force_wipe: bool = True,
        description: str | None = None, resource_uuid: str | None = None, user_tags: Sequence[str] | None = None,
        deadline: float | None = None,
    ) -> PrimaryStorageInventory:
        """Create SharedBlock primary storage on LUNs given by wwid; ``force_wipe`` wipes what is on them."""
        if not disk_uuids:
            raise ZStackInvalidArgumentError("SYS.1007", "One or more API argument is invalid",
                                             "diskUuids must name at least one disk",
                                             action="AddSharedBlockGroupPrimaryStorage")
        params = {"name": name, "zoneUuid": zone_uuid, "diskUuids": list(disk_uuids), "description": description}
        return await self._create("AddSharedBlockGroupPrimaryStorage", "QuerySharedBlockGroupPrimaryStorage",
                                  PrimaryStorageInventory, params, resource_uuid=resource_uuid,
                                  system_tags=["forceWipe"] if force_wipe else None, user_tags=user_tags,
                                  deadline=deadline)

    async def get_primary_storage(self, uuid: str, *, deadline: float | None = None) -> PrimaryStorageInventory | None:
        """One primary storage by uuid (SharedBlock ones with their disks), or None."""
        shared = await self._get("QuerySharedBlockGroupPrimaryStorage", PrimaryStorageInventory, uuid,
                                 deadline=deadline)
        return shared or await self._get("QueryPrimaryStorage", PrimaryStorageInventory, uuid, deadline=deadline)

    async def attach_primary_storage_to_cluster(self, primary_storage_uuid: str, cluster_uuid: str, *,
                                                deadline: float | None = None) -> PrimaryStorageInventory:
        """Attach primary storage to a cluster (no-op when already attached)."""
        storage = await self._require("QueryPrimaryStorage", PrimaryStorageInventory, primary_storage_uuid,
                                      "primary storage", deadline=deadline)
        if cluster_uuid in storage.attached_cluster_uuids:
            return storage
        result = await self.api.call("AttachPrimaryStorageToCluster", {"primaryStorageUuid": primary_storage_uuid,
                                                                   "clusterUuid": cluster_uuid}, deadline=deadline)
        return PrimaryStorageInventory.model_validate(result["inventory"])

    # --- backup storage and images -------------------------------------------------------------------

    async def add_image_store_backup_storage(
        self, name: str, hostname: str, *, username: str, password: SecretStr, url: str, ssh_port: int = 22,
        description: str | None = None, resource_uuid: str | None = None, user_tags: Sequence[str] | None = None,
        deadline: float | None = None,
    ) -> BackupStorageInventory:
        """Add ImageStore backup storage on ``hostname`` (path ``url``); returns once it is Connected."""
        params = {"name": name, "hostname": hostname, "username": username, "password": password.get_secret_value(),
                  "url": url, "sshPort": ssh_port, "description": description}
        return await self._create("AddImageStoreBackupStorage", "QueryBackupStorage", BackupStorageInventory, params,
                                  resource_uuid=resource_uuid, user_tags=user_tags, deadline=deadline,
                                  secrets=(password,))

    async def attach_backup_storage_to_zone(self, backup_storage_uuid: str, zone_uuid: str, *,
                                            deadline: float | None = None) -> BackupStorageInventory:
        """Attach backup storage to a zone (no-op when already attached)."""
        storage = await self._require("QueryBackupStorage", BackupStorageInventory, backup_storage_uuid,
                                      "backup storage", deadline=deadline)
        if zone_uuid in storage.attached_zone_uuids:
            return storage
        result = await self.api.call("AttachBackupStorageToZone", {"backupStorageUuid": backup_storage_uuid,
                                                               "zoneUuid": zone_uuid}, deadline=deadline)
        return BackupStorageInventory.model_validate(result["inventory"])

    async def add_image(self, name: str, url: str, backup_storage_uuids: Sequence[str], *, format: str = "qcow2",
                        media_type: str | None = None, platform: str = "Linux",
                        architecture: str | None = None, guest_os_type: str | None = None,
                        description: str | None = None, resource_uuid: str | None = None,
                        user_tags: Sequence[str] | None = None, deadline: float | None = None) -> ImageInventory:
        """Add an image from ``url``; returns once it is Ready (or fails with the download error).

        ``media_type`` follows ``format`` unless given: an ``iso`` is an ``ISO``, anything else a
        ``RootVolumeTemplate``; an ISO registered as a root-volume template (or the reverse) is refused."""
        media_type = media_type or ("ISO" if format == "iso" else "RootVolumeTemplate")
        if (format == "iso") != (media_type == "ISO"):
            raise ZStackInvalidArgumentError("SYS.1007", "One or more API argument is invalid",
                                             f"an image of format {format} cannot have mediaType {media_type}",
                                             action="AddImage")
        params = {"name": name, "url": url, "backupStorageUuids": list(backup_storage_uuids), "format": format,
                  "mediaType": media_type, "platform": platform, "architecture": architecture,
                  "guestOsType": guest_os_type, "description": description}
        return await self._create("AddImage", "QueryImage", ImageInventory, params, resource_uuid=resource_uuid,
                                  user_tags=user_tags, deadline=deadline)

    async def create_root_volume_template(
        self, name: str, root_volume_uuid: str, backup_storage_uuids: Sequence[str], *,
        description: str | None = None, resource_uuid: str | None = None, user_tags: Sequence[str] | None = None,
        deadline: float | None = None,
    ) -> ImageInventory:
        """An image of a VM's root volume on the backup storage (CreateRootVolumeTemplateFromRootVolume); returns
        it Ready. The server takes the platform and guest OS type from the VM and its image; an SFTP backup
        storage wants the VM stopped (ImageStore does not, but a stopped VM gives a consistent disk)."""
        params = {"name": name, "rootVolumeUuid": root_volume_uuid, "backupStorageUuids": list(backup_storage_uuids),
                  "description": description}
        image = await self._create("CreateRootVolumeTemplateFromRootVolume", "QueryImage", ImageInventory, params,
                                   resource_uuid=resource_uuid, user_tags=user_tags, deadline=deadline)
        while image.status == "Creating":  # an earlier attempt's job is still copying the disk
            await asyncio.sleep(5)
            found = await self._get("QueryImage", ImageInventory, image.uuid, deadline=deadline)
            if found is None:
                raise ZStackError("sdk.1002", f"image {image.uuid} vanished while being created",
                                  action="CreateRootVolumeTemplateFromRootVolume")
            image = found
        return image

    async def find_image_by_name(self, name: str, *, deadline: float | None = None) -> ImageInventory | None:
        """The image named ``name`` that is not Deleted (a Ready, Enabled one wins over others), or None."""
        return await self._find_by_name("QueryImage", ImageInventory, name, "image", extra=[ne("status", "Deleted")],
                                        usable=lambda image: image.usable, deadline=deadline)
