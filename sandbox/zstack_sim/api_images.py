"""Handlers: ImageStore backup storage and images (Downloading → Ready, Deleted → expunged)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from sandbox.zstack_sim.api_infra import ARCHITECTURES, check_address
from sandbox.zstack_sim.context import Ctx, api, success_if_not_existing
from sandbox.zstack_sim.errors import ApiError, argerr, operr
from sandbox.zstack_sim.hooks import ImageFetched
from sandbox.zstack_sim.store import zstack_date
from sandbox.zstack_sim.views import render

log = logging.getLogger(__name__)

GiB = 1024**3
BACKUP_STORAGE_CAPACITY = 2 * 1024 * GiB
_URL_SCHEMES = ("http://", "https://", "file:///", "ftp://", "sftp://", "/")
PLATFORMS = ("Linux", "Windows", "Other", "Paravirtualization", "WindowsVirtio")


def image_sizes(url: str) -> tuple[int, int]:
    """(virtual size, actual size) of the image at ``url``; CirrOS is small, anything else a typical cloud image."""
    if "cirros" in url.lower():
        return 117_440_512, 21_233_664
    spread = int(hashlib.sha256(url.encode()).hexdigest()[:4], 16) % 512  # stable, so repeated runs agree
    return 10 * GiB, 1 * GiB + spread * 1024**2


def image_record(uuid: str, name: str, url: str, backup_storage_uuids: list[str], *, status: str, fmt: str = "qcow2",
                 media_type: str = "RootVolumeTemplate", platform: str = "Linux", architecture: str = "x86_64",
                 description: str | None = None, guest_os_type: str | None = None) -> dict[str, Any]:
    """An image inventory; sizes are known once it is Ready."""
    size, actual = image_sizes(url) if status == "Ready" else (0, 0)
    return {
        "uuid": uuid, "name": name, "description": description, "state": "Enabled", "status": status,
        "size": size, "actualSize": actual, "md5Sum": None, "url": url, "mediaType": media_type,
        "guestOsType": guest_os_type, "type": "zstack", "platform": platform, "architecture": architecture,
        "format": fmt, "system": False, "virtio": True,
        "backupStorageRefs": [{"imageUuid": uuid, "backupStorageUuid": bs, "installPath": f"zstore://{bs}/{uuid}",
                               "status": status, "createDate": zstack_date(), "lastOpDate": zstack_date()}
                              for bs in backup_storage_uuids],
    }


@api("AddImageStoreBackupStorage")
async def add_image_store_backup_storage(ctx: Ctx) -> dict[str, Any]:
    """ImageStore backup storage on a host: Connecting while deployed, then Connected."""
    name = ctx.text("name", max_len=255) or ctx.required("name")
    hostname = check_address(str(ctx.required("hostname")), "hostname")
    ctx.required("username")
    ctx.required("password")
    url = str(ctx.required("url"))
    if not url.startswith("/"):
        raise argerr(f"url[{url}] must be an absolute path")
    record = {"uuid": ctx.resource_uuid(), "name": name, "description": ctx.text("description", max_len=2048),
              "url": url, "totalCapacity": BACKUP_STORAGE_CAPACITY, "availableCapacity": BACKUP_STORAGE_CAPACITY,
              "type": "ImageStoreBackupStorage", "state": "Enabled", "status": "Connecting", "attachedZoneUuids": [],
              "hostname": hostname, "username": ctx.param("username"), "sshPort": ctx.integer("sshPort", default=22)}
    storage = ctx.create("backup_storage", record)
    try:
        await ctx.work()
        await _login(ctx, hostname, int(record["sshPort"] or 22))
    except BaseException:
        ctx.state.remove("backup_storage", storage["uuid"])
        raise
    ctx.state.touch(storage, status="Connected")
    return {"inventory": render(ctx.state, "backup_storage", storage)}


async def _login(ctx: Ctx, hostname: str, port: int) -> None:
    """The backup storage deploy logs in with the password it was given, as ZStack's does over SSH."""
    username = str(ctx.required("username"))
    try:
        await ctx.nested_hooks.check_login(hostname, port, username, str(ctx.required("password")))
    except Exception as err:  # the SSH failure is the API's failure, worded as ZStack words it
        raise operr(f"unable to connect to Host[ip:{hostname}, username:{username}, sshPort:{port}] to check the "
                    f"management node connectivity,please check if username/password is wrong; {err}") from err


@api("AttachBackupStorageToZone")
async def attach_backup_storage_to_zone(ctx: Ctx) -> dict[str, Any]:
    """Make a backup storage serve a zone."""
    zone, storage = ctx.ref("zoneUuid", "zone"), ctx.ref("backupStorageUuid", "backup_storage")
    assert zone is not None and storage is not None
    if zone["uuid"] in storage["attachedZoneUuids"]:
        raise argerr(f"backup storage[uuid:{storage['uuid']}] has been attached to zone[uuid:{zone['uuid']}]")
    await ctx.work()
    ctx.state.touch(storage, attachedZoneUuids=[*storage["attachedZoneUuids"], zone["uuid"]])
    return {"inventory": render(ctx.state, "backup_storage", storage)}


@api("AddImage")
async def add_image(ctx: Ctx) -> dict[str, Any]:
    """Download an image to backup storage: Downloading, then Ready with its size."""
    name = ctx.text("name", max_len=255) or ctx.required("name")
    url = str(ctx.required("url"))
    if not url.startswith(_URL_SCHEMES) or "{" in url:
        raise argerr(f"url must starts with 'file:///', 'http://', 'https://', 'ftp://', 'sftp://' or '/', "
                     f"but got {url}")
    storages = ctx.uuid_list("backupStorageUuids", "backup_storage")
    for storage in storages:
        if storage["status"] != "Connected":
            raise operr(f"backup storage[uuid:{storage['uuid']}] is not Connected, current status is "
                        f"{storage['status']}")
    record = image_record(
        ctx.resource_uuid(), name, url, [s["uuid"] for s in storages], status="Downloading",
        fmt=ctx.choice("format", ("qcow2", "raw", "iso", "vmtx", "vmdk"), "qcow2") or "qcow2",
        media_type=ctx.choice("mediaType", ("RootVolumeTemplate", "ISO", "DataVolumeTemplate"),
                              "RootVolumeTemplate") or "RootVolumeTemplate",
        platform=ctx.choice("platform", PLATFORMS, "Linux") or "Linux",
        architecture=ctx.choice("architecture", ARCHITECTURES, "x86_64") or "x86_64",
        description=ctx.text("description", max_len=2048), guest_os_type=ctx.text("guestOsType"))
    image = ctx.create("image", record)
    try:
        await ctx.work()
        fetched = await _download(ctx, url, record["format"])
    except BaseException:
        ctx.state.remove("image", image["uuid"])
        raise
    refs = [{**ref, "status": "Ready", "lastOpDate": zstack_date()} for ref in image["backupStorageRefs"]]
    ctx.state.touch(image, status="Ready", size=fetched.size, actualSize=fetched.actual_size, backupStorageRefs=refs)
    for storage in storages:
        storage["availableCapacity"] -= fetched.actual_size
    return {"inventory": render(ctx.state, "image", image)}


async def _download(ctx: Ctx, url: str, declared: str) -> ImageFetched:
    """The backup storage downloads the image and reads its format (zstack-utility sftpbackupstorage's
    download_image: wget, then ``qemu-img info``; a failed wget fails the download). What is not the declared
    qcow2/raw image is refused: booting it would fail later and far from the cause."""
    try:
        fetched = await ctx.nested_hooks.fetch_image(url)
    except Exception as err:  # the agent's failure is the API's failure
        raise operr(f"http/https/ftp download failed, [wget -O {url.rsplit('/', 1)[-1]} {url}] returns value 8; "
                    f"{err}") from err
    if declared in ("qcow2", "raw") and fetched.format != declared:
        raise operr(f"the image downloaded from {url} is {fetched.format}, not the {declared} image declared; "
                    "only qcow2 and raw images can be added with format qcow2 or raw")
    return fetched


@api("DeleteImage")
async def delete_image(ctx: Ctx) -> dict[str, Any]:
    """Deletion policy Delay: the image becomes Deleted and can still be expunged. APIDeleteImageMsg's uuid is
    ``successIfResourceNotExisting``: deleting an image that does not exist succeeds (ApiMessageValidator)."""
    ctx.choice("deleteMode", ("Permissive", "Enforcing"), "Permissive")
    image = ctx.state.get("image", str(ctx.required("uuid")))
    if image is None:
        success_if_not_existing(ctx, "uuid")
        return {}
    await ctx.work()
    ctx.state.touch(image, status="Deleted")
    return {}


@api("ExpungeImage")
async def expunge_image(ctx: Ctx) -> dict[str, Any]:
    """Remove a Deleted image for good."""
    image = ctx.ref("imageUuid", "image")
    assert image is not None
    if image["status"] != "Deleted":
        raise operr(f"image[uuid:{image['uuid']}] is not deleted, can't expunge it")
    await ctx.work()
    await ctx.outer_hooks.image_expunged(image["uuid"])
    for ref in image["backupStorageRefs"]:
        storage = ctx.state.get("backup_storage", ref["backupStorageUuid"])
        if storage is not None:
            storage["availableCapacity"] += int(image.get("actualSize") or 0)
    ctx.state.remove("image", image["uuid"])
    return {}


@api("CreateRootVolumeTemplateFromRootVolume")
async def create_root_volume_template_from_root_volume(ctx: Ctx) -> dict[str, Any]:
    """An image of a VM's root disk, on backup storage: Creating, then Ready (zstackio/zstack ImageManagerImpl).

    As the server: the platform and guest OS type default to the VM's and its image's (ImageApiInterceptor),
    an SFTP backup storage refuses a Running or Paused VM (SftpBackupStorageApiInterceptor), and the outer
    hooks copy the disk for real (the lab-in-a-box: the VM's files).
    """
    name = ctx.text("name", max_len=255) or ctx.required("name")
    volume = ctx.ref("rootVolumeUuid", "volume")
    assert volume is not None
    if volume["type"] != "Root":
        raise argerr(f"volume[uuid:{volume['uuid']}] is not a root volume")
    if volume["status"] != "Ready":
        raise operr(f"volume[uuid:{volume['uuid']}] is not Ready, it's {volume['status']}")
    vm = ctx.state.get("vm", volume.get("vmInstanceUuid"))
    if vm is None:
        raise operr(f"root volume[uuid:{volume['uuid']}] is not attached to any vm")
    storages = ctx.uuid_list("backupStorageUuids", "backup_storage", required=False)
    if not storages:  # the server then picks the backup storage of the VM's zone
        storages = [s for s in ctx.state.records["backup_storage"].values()
                    if vm.get("zoneUuid") in s["attachedZoneUuids"]][:1]
    if not storages:
        raise operr(f"no backup storage attached to the zone of vm[uuid:{vm['uuid']}]")
    for storage in storages:
        if vm["state"] in ("Running", "Paused") and storage["type"] == "SftpBackupStorage":
            raise argerr(f"Please stop the vm before create volume template to sftp backup storage {storage['uuid']}")
        if storage["status"] != "Connected":
            raise operr(f"backup storage[uuid:{storage['uuid']}] is not Connected, current status is "
                        f"{storage['status']}")
    source = ctx.state.get("image", volume.get("rootImageUuid")) or {}
    record = image_record(
        ctx.resource_uuid(), name, "", [s["uuid"] for s in storages], status="Creating",
        fmt=volume.get("format") or "qcow2",
        platform=ctx.choice("platform", PLATFORMS, None) or vm.get("platform") or source.get("platform") or "Linux",
        architecture=vm.get("architecture") or source.get("architecture") or "x86_64",
        description=ctx.text("description", max_len=2048),
        guest_os_type=ctx.text("guestOsType") or source.get("guestOsType"))
    image = ctx.create("image", record)
    try:
        await ctx.work(4)
        actual = await ctx.outer_hooks.root_volume_template_created(vm["uuid"], image["uuid"])
    except BaseException as err:
        ctx.state.remove("image", image["uuid"])
        if isinstance(err, Exception) and not isinstance(err, ApiError):
            raise operr(f"failed to create a template from root volume[uuid:{volume['uuid']}]: {err}") from err
        raise
    refs = [{**ref, "status": "Ready", "lastOpDate": zstack_date()} for ref in image["backupStorageRefs"]]
    ctx.state.touch(image, status="Ready", size=int(volume["size"]), actualSize=actual, backupStorageRefs=refs)
    for storage in storages:
        storage["availableCapacity"] -= actual
    return {"inventory": render(ctx.state, "image", image)}
