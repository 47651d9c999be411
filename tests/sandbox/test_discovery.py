"""Discovery from VM2 as the nested simulator does it: libiscsi's listing plus our raw INQUIRY of each LUN."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sandbox.discovery import parse_iscsi_ls
from services.iscsi.base import TargetSpec
from services.iscsi.disk import find_data_disk
from services.iscsi.initiator import ensure_initiator_name
from services.iscsi.naming import target_iqn
from services.iscsi.tgt import TgtBackend
from services.iscsi.vpd import wwid_from_page83
from tests.sandbox.labbox import Lab, LabBox, python_on, require_sandbox

SIZE = 96 * 1024**2


def test_parse_iscsi_ls_output() -> None:
    text = (
        "Target:iqn.2026-11.io.labbot:alpha Portal:198.19.200.10:3260,1\n"
        "Lun:0    Type:STORAGE_ARRAY_CONTROLLER\n"
        "Lun:1    Type:DIRECT_ACCESS (Size:63M)\n"
        "Target:iqn.2026-11.io.labbot:alpha Portal:[::1]:3260,1\n"
        "Lun:0    Type:STORAGE_ARRAY_CONTROLLER\n"
        "Lun:1    Type:DIRECT_ACCESS (Size:63M)\n"
        "Target:iqn.2026-11.io.labbot:beta Portal:198.19.200.10:3260,1\n"
    )
    assert parse_iscsi_ls(text) == [
        ("iqn.2026-11.io.labbot:alpha", [(0, "STORAGE_ARRAY_CONTROLLER"), (1, "DIRECT_ACCESS")]),
        ("iqn.2026-11.io.labbot:beta", []),
    ]


@pytest.fixture(scope="module")
def box() -> Iterator[LabBox]:
    require_sandbox()
    box = LabBox("probe")
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def exported(box: LabBox) -> tuple[Lab, TargetSpec]:
    async def make() -> tuple[Lab, TargetSpec]:
        lab = await box.make_lab("probelab", volume_size=SIZE)
        async with lab.ssh() as ssh:
            device = await find_data_disk(ssh.runner("vm1"), lab.volume_uuid, None)
            spec = TargetSpec(iqn=target_iqn("iqn.2026-11.io.labbot", lab.name), device=device,
                              initiator_iqn=await ensure_initiator_name(ssh.runner("vm2"), lab.vm2_initiator),
                              portal_ip=lab.vm1_vpc_ip)
            await TgtBackend(ssh.runner("vm1")).ensure(spec)
        return lab, spec

    return box.run(make())


PROBE = (
    "import asyncio, json\n"
    "from sandbox.iscsi_probe import probe_lun, ProbeError\n"
    "async def main():\n"
    "    try:\n"
    "        p = await probe_lun({ip!r}, 3260, {iqn!r}, 1, {initiator!r})\n"
    "    except ProbeError as err:\n"
    "        return {{'error': str(err)}}\n"
    "    return {{'vendor': p.vendor, 'product': p.product, 'serial': p.serial, 'size': p.size_bytes,\n"
    "            'page83': p.page83.hex()}}\n"
    "print(json.dumps(asyncio.run(main())))\n"
)


@pytest.mark.sandbox
async def test_probe_agrees_with_libiscsi_and_reads_the_raw_designators(exported: tuple[Lab, TargetSpec]) -> None:
    lab, spec = exported
    url = f"iscsi://{lab.vm1_vpc_ip}:3260/{spec.iqn}/1"
    async with lab.ssh() as ssh:
        probe = await python_on(ssh, "vm2", PROBE.format(ip=lab.vm1_vpc_ip, iqn=spec.iqn,
                                                         initiator=spec.initiator_iqn))
        capacity, serial, standard = await asyncio.gather(
            ssh.run("vm2", f"iscsi-readcapacity16 -i {spec.initiator_iqn} {url}", timeout=20),
            ssh.run("vm2", f"iscsi-inq -i {spec.initiator_iqn} -e 1 -c 128 {url}", timeout=20),
            ssh.run("vm2", f"iscsi-inq -i {spec.initiator_iqn} {url}", timeout=20),
        )
        info = await TgtBackend(ssh.runner("vm1")).describe(spec.iqn)
    assert info is not None
    assert f"Total size:{probe['size']}" in capacity.stdout and probe["size"] == SIZE == info.size_bytes
    shown_serial = serial.stdout.split("Unit Serial Number:[", 1)[1].split("]", 1)[0].strip()
    assert shown_serial == probe["serial"] == info.serial
    assert f"Vendor:{probe['vendor']}" in standard.stdout and f"Product:{probe['product']}" in standard.stdout
    # The bytes iscsi-inq cannot print give the wwid the iSCSI service reported for the lab.
    assert wwid_from_page83(bytes.fromhex(probe["page83"])) == info.wwid


@pytest.mark.sandbox
async def test_probe_is_refused_for_an_initiator_the_acl_does_not_admit(exported: tuple[Lab, TargetSpec]) -> None:
    lab, spec = exported
    async with lab.ssh() as ssh:
        refused = await python_on(ssh, "vm2", PROBE.format(ip=lab.vm1_vpc_ip, iqn=spec.iqn,
                                                           initiator="iqn.2026-11.io.labbot.sandbox:intruder"))
    assert "not visible to this initiator" in refused["error"]  # tgt hides a target from other initiators
