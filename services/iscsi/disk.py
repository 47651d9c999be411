"""Finding VM1's data disk: by the volume's serial under /dev/disk/by-id, or the profile's explicit device.

KVM gives a virtio disk the serial of the ZStack volume (its uuid, cut to 20 characters), so the disk shows up
as ``/dev/disk/by-id/virtio-<uuid prefix>`` (``scsi-0QEMU_QEMU_HARDDISK_<uuid>`` on virtio-scsi). The stable
by-id path is returned rather than ``/dev/vdb``, because device letters can change across reboots and the
target configuration is persisted with this path.
"""

from __future__ import annotations

import logging

from services import shell
from services.iscsi.base import IscsiError
from services.ssh.result import Runner

log = logging.getLogger(__name__)

SERIAL_PREFIX_LENGTH = 20

# $1 is the serial prefix (validated hex). Prints "<by-id path> <resolved device>" per whole-disk match.
_FIND = r"""
for f in /dev/disk/by-id/*"$1"*; do
  case "$f" in *-part[0-9]*) continue;; esac
  [ -e "$f" ] && printf '%s %s\n' "$f" "$(readlink -f "$f")"
done
exit 0
"""


def serial_prefix(volume_uuid: str) -> str:
    """The part of a volume's uuid that appears in its disk's serial (virtio keeps 20 characters)."""
    return shell.hex_string(volume_uuid.replace("-", "").lower(), min_length=8)[:SERIAL_PREFIX_LENGTH]


def find_command(prefix: str) -> str:
    """The command listing whole-disk by-id entries whose name contains ``prefix``."""
    return shell.sh_c(_FIND, shell.hex_string(prefix))


async def find_data_disk(run: Runner, volume_uuid: str, override: str | None) -> str:
    """The data disk's device path on VM1 (``run`` executes on VM1)."""
    if override:
        shell.device_path(override)
        result = await run(f"test -e {shell.quote(override)}")
        if not result.ok:
            raise IscsiError(f"data disk {override} (profile data_disk) does not exist on VM1")
        return override
    prefix = serial_prefix(volume_uuid)
    result = await run(find_command(prefix))
    if not result.ok:
        raise IscsiError(f"cannot list /dev/disk/by-id on VM1: {result.stderr.strip()[-200:]}")
    by_device: dict[str, str] = {}
    for line in sorted(result.stdout.splitlines()):
        path, _, device = line.partition(" ")
        by_device.setdefault(device or path, path)  # several links may name one disk: keep the first
    if not by_device:
        raise IscsiError(
            f"no disk with serial {prefix}* under /dev/disk/by-id on VM1; is volume {volume_uuid} attached? "
            "(set data_volume.data_disk in the lab profile to name the device instead)"
        )
    if len(by_device) > 1:
        raise IscsiError(f"several disks match serial {prefix} on VM1: {', '.join(sorted(by_device.values()))}")
    found = shell.device_path(next(iter(by_device.values())))
    log.info("data disk for volume %s is %s", volume_uuid, found)
    return found
