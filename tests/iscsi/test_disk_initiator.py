"""Finding VM1's data disk by the volume's serial, and reading VM2's initiator name."""

from __future__ import annotations

import pytest

from services.iscsi.base import IscsiError
from services.iscsi.disk import find_command, find_data_disk, serial_prefix
from services.iscsi.initiator import parse_initiator_name, read_initiator_name
from services.iscsi.naming import object_name, target_iqn
from services.shell import UnsafeValueError
from tests.iscsi.transcript import Transcript, fail, ok

VOLUME = "0123456789abcdef0123456789abcdef"
FIND = find_command("0123456789abcdef0123")


def test_serial_prefix_is_what_virtio_keeps() -> None:
    assert serial_prefix(VOLUME) == "0123456789abcdef0123"
    assert serial_prefix("01234567-89ab-cdef-0123-456789abcdef") == "0123456789abcdef0123"
    with pytest.raises(UnsafeValueError):
        serial_prefix("../../etc")


async def test_finds_the_disk_by_serial_and_prefers_the_stable_path() -> None:
    links = (
        "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_0123456789abcdef0123 /dev/sdb\n"
        "/dev/disk/by-id/virtio-0123456789abcdef0123 /dev/sdb\n"
    )
    run = Transcript([(FIND, ok(links))])
    assert await find_data_disk(run, VOLUME, None) == "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_0123456789abcdef0123"
    run.finished()


async def test_no_disk_or_several_disks_are_clear_errors() -> None:
    with pytest.raises(IscsiError, match=r"no disk with serial 0123456789abcdef0123\* .* data_volume.data_disk"):
        await find_data_disk(Transcript([(FIND, ok(""))]), VOLUME, None)
    two = (
        "/dev/disk/by-id/virtio-0123456789abcdef0123 /dev/vdb\n"
        "/dev/disk/by-id/virtio-0123456789abcdef01234 /dev/vdc\n"
    )
    with pytest.raises(IscsiError, match="several disks match"):
        await find_data_disk(Transcript([(FIND, ok(two))]), VOLUME, None)


async def test_profile_override_is_checked_and_used() -> None:
    run = Transcript([("test -e /dev/sdb", ok())])
    assert await find_data_disk(run, VOLUME, "/dev/sdb") == "/dev/sdb"
    with pytest.raises(IscsiError, match=r"data disk /dev/sdc .* does not exist on VM1"):
        await find_data_disk(Transcript([("test -e /dev/sdc", fail(""))]), VOLUME, "/dev/sdc")
    with pytest.raises(UnsafeValueError):
        await find_data_disk(Transcript([]), VOLUME, "/dev/sdb; reboot")


async def test_initiator_name_of_vm2() -> None:
    text = "## DO NOT EDIT OR REMOVE THIS FILE!\n# comment\nInitiatorName=iqn.1994-05.com.redhat:5f2e9c8d7b6a\n"
    run = Transcript([("cat /etc/iscsi/initiatorname.iscsi", ok(text))])
    assert await read_initiator_name(run) == "iqn.1994-05.com.redhat:5f2e9c8d7b6a"
    missing = Transcript([("cat /etc/iscsi/initiatorname.iscsi", fail("No such file or directory"))])
    with pytest.raises(IscsiError, match=r"is the iSCSI initiator .* installed"):
        await read_initiator_name(missing)
    with pytest.raises(IscsiError, match="no InitiatorName= line"):
        parse_initiator_name("# empty\n")
    with pytest.raises(UnsafeValueError):
        parse_initiator_name("InitiatorName=iqn.2026-11.x:$(reboot)\n")


def test_names_derive_from_the_lab() -> None:
    assert target_iqn("iqn.2026-11.io.labbot", "lab1") == "iqn.2026-11.io.labbot:lab1"
    assert object_name("iqn.2026-11.io.labbot:lab1") == "labbot-lab1"
    with pytest.raises(UnsafeValueError):
        target_iqn("iqn.2026-11.io.labbot", "Lab_1")
