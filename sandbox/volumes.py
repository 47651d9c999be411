"""Data volumes of the sandbox: sparse files that VMs see as virtio disks under ``/dev/disk/by-id``.

A 50 GB volume costs no disk until written (``truncate``). Attaching it to a VM makes
``/dev/disk/by-id/virtio-<first 20 characters of the volume uuid>`` in that VM point at the file, which is
how KVM exposes a virtio disk whose serial is the ZStack volume uuid (virtio serials are 20 bytes).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sandbox.config import SandboxConfig
from sandbox.system import SandboxError

log = logging.getLogger(__name__)

VIRTIO_SERIAL_LENGTH = 20


def by_id_name(volume_uuid: str) -> str:
    """The by-id entry a virtio disk with this volume's serial gets."""
    return f"virtio-{volume_uuid[:VIRTIO_SERIAL_LENGTH]}"


def _check_uuid(volume_uuid: str) -> None:
    if not volume_uuid or not all(c in "0123456789abcdef-" for c in volume_uuid) or len(volume_uuid) > 64:
        raise SandboxError(f"{volume_uuid!r} is not a volume uuid")


def ensure_volume_file(config: SandboxConfig, volume_uuid: str, size: int) -> Path:
    """Create the sparse backing file (or grow it to ``size``); the data in it is kept."""
    _check_uuid(volume_uuid)
    if size <= 0:
        raise SandboxError(f"volume {volume_uuid} size {size} must be positive")
    config.volumes_dir.mkdir(parents=True, exist_ok=True)
    path = config.volume_file(volume_uuid)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return path


def attach(config: SandboxConfig, volume_uuid: str, size: int, vm_uuid: str) -> Path:
    """Make the volume appear in the VM as ``/dev/disk/by-id/virtio-<serial>``; returns the backing file."""
    path = ensure_volume_file(config, volume_uuid, size)
    by_id = config.vm_dir(vm_uuid) / "by-id"
    by_id.mkdir(parents=True, exist_ok=True)
    link = by_id / by_id_name(volume_uuid)
    link.unlink(missing_ok=True)
    link.symlink_to(path)
    log.info("sandbox volume %s (%d bytes) attached to VM %s", volume_uuid, size, vm_uuid)
    return path


def detach(config: SandboxConfig, volume_uuid: str, vm_uuid: str) -> None:
    """Remove the volume's by-id entry from the VM (the data stays)."""
    _check_uuid(volume_uuid)
    (config.vm_dir(vm_uuid) / "by-id" / by_id_name(volume_uuid)).unlink(missing_ok=True)


def expunge(config: SandboxConfig, volume_uuid: str) -> None:
    """Detach the volume from every VM and delete its file."""
    _check_uuid(volume_uuid)
    if config.vms_dir.is_dir():
        for link in config.vms_dir.glob(f"*/by-id/{by_id_name(volume_uuid)}"):
            link.unlink(missing_ok=True)
    config.volume_file(volume_uuid).unlink(missing_ok=True)
    log.info("sandbox volume %s expunged", volume_uuid)
