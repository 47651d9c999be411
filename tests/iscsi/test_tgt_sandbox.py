"""The tgt backend for real: VM1's tgtd configured over SSH, VM2 discovering the LUN across the VPC.

Two labs share one VPC segment (the worst case of the real shared VPC): each VM2 sees its own lab's target
and nothing of the other's, because each target admits only its own VM2's initiator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from services.iscsi.base import TargetSpec
from services.iscsi.disk import find_data_disk
from services.iscsi.initiator import ensure_initiator_name
from services.iscsi.naming import target_iqn
from services.iscsi.tgt import TgtBackend
from services.ssh import LabSSH
from services.ssh.result import CommandResult
from tests.sandbox.labbox import Lab, LabBox, python_on, require_sandbox

pytestmark = pytest.mark.sandbox

SIZE = 64 * 1024**2
DISCOVER = (
    "import asyncio, dataclasses, json\n"
    "from sandbox.hooks import NestedSandboxHooks\n"
    "found = asyncio.run(NestedSandboxHooks().discover_iscsi({ip!r}, 3260))\n"
    "print(json.dumps([dataclasses.asdict(t) for t in found]))\n"
)


@pytest.fixture(scope="module")
def box() -> Iterator[LabBox]:
    require_sandbox()
    box = LabBox("iscsi")
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def labs(box: LabBox) -> tuple[Lab, Lab]:
    async def make() -> tuple[Lab, Lab]:
        return await asyncio.gather(box.make_lab("alpha", volume_size=SIZE), box.make_lab("beta", volume_size=2 * SIZE))

    return box.run(make())


class Recorder:
    """Runs commands on VM1 and remembers them."""

    def __init__(self, ssh: LabSSH) -> None:
        self.ssh = ssh
        self.commands: list[str] = []

    async def __call__(self, command: str) -> CommandResult:
        self.commands.append(command)
        return await self.ssh.run("vm1", command, timeout=60, check=False)


async def spec_for(ssh: LabSSH, lab: Lab) -> TargetSpec:
    device = await find_data_disk(ssh.runner("vm1"), lab.volume_uuid, None)
    return TargetSpec(iqn=target_iqn("iqn.2026-11.io.labbot", lab.name), device=device,
                      initiator_iqn=await ensure_initiator_name(ssh.runner("vm2"), lab.vm2_initiator),
                      portal_ip=lab.vm1_vpc_ip)


async def discover(ssh: LabSSH, ip: str) -> list[dict]:
    return await python_on(ssh, "vm2", DISCOVER.format(ip=ip))


async def test_target_is_configured_idempotently_and_vm2_discovers_it(labs: tuple[Lab, Lab]) -> None:
    alpha, _ = labs
    async with alpha.ssh() as ssh:
        spec = await spec_for(ssh, alpha)
        assert spec.device == f"/dev/disk/by-id/virtio-{alpha.volume_uuid[:20]}"
        first = Recorder(ssh)
        info = await TgtBackend(first).ensure(spec)
        assert (info.iqn, info.lun, info.size_bytes) == ("iqn.2026-11.io.labbot:alpha", 1, SIZE)

        again = Recorder(ssh)
        assert await TgtBackend(again).ensure(spec) == info
        changes = [c for c in again.commands if c.startswith("tgtadm") and "--op show" not in c]
        assert changes == [] and not any(c.startswith(("printf", "mkdir")) for c in again.commands)

        found = await discover(ssh, alpha.vm1_vpc_ip)
    assert found == [{"iqn": info.iqn, "luns": [{
        "lun_id": 1, "wwid": info.wwid, "size": SIZE, "vendor": "IET", "model": "VIRTUAL-DISK", "serial": info.serial,
    }]}]


async def test_two_labs_do_not_see_each_others_targets(labs: tuple[Lab, Lab]) -> None:
    alpha, beta = labs
    async with alpha.ssh() as ssh_a, beta.ssh() as ssh_b:
        info_a = await TgtBackend(ssh_a.runner("vm1")).ensure(await spec_for(ssh_a, alpha))
        info_b = await TgtBackend(ssh_b.runner("vm1")).ensure(await spec_for(ssh_b, beta))
        assert info_a.wwid != info_b.wwid and info_b.size_bytes == 2 * SIZE
        assert [t["iqn"] for t in await discover(ssh_b, beta.vm1_vpc_ip)] == [info_b.iqn]
        assert await discover(ssh_a, beta.vm1_vpc_ip) == []  # same VPC, but the ACL admits only beta's VM2
        assert await discover(ssh_b, alpha.vm1_vpc_ip) == []


async def test_target_survives_a_reboot_of_vm1(box: LabBox, labs: tuple[Lab, Lab]) -> None:
    alpha, _ = labs
    async with alpha.ssh() as ssh:
        spec = await spec_for(ssh, alpha)
        before = await TgtBackend(ssh.runner("vm1")).ensure(spec)
    await box.hooks.vm_started(alpha.vm1)  # power cycle: tgtd starts empty and loads /etc/tgt/conf.d
    async with alpha.ssh() as ssh:
        await ssh.wait_ready("vm1", timeout=20)
        backend = TgtBackend(ssh.runner("vm1"))
        for _ in range(50):  # the restore runs in the background of the boot
            if await backend.describe(spec.iqn) is not None:
                break
            await asyncio.sleep(0.1)
        assert await backend.describe(spec.iqn) == before
        assert [t["luns"][0]["wwid"] for t in await discover(ssh, alpha.vm1_vpc_ip)] == [before.wwid]


async def test_teardown_removes_exactly_what_ensure_made(labs: tuple[Lab, Lab]) -> None:
    alpha, beta = labs
    async with alpha.ssh() as ssh, beta.ssh() as ssh_b:
        spec = await spec_for(ssh, alpha)
        backend = TgtBackend(ssh.runner("vm1"))
        await backend.ensure(spec)
        beta_info = await TgtBackend(ssh_b.runner("vm1")).ensure(await spec_for(ssh_b, beta))
        await backend.teardown(spec.iqn)
        assert await backend.describe(spec.iqn) is None
        listing = await ssh.run("vm1", "ls /etc/tgt/conf.d; tgtadm --lld iscsi --op show --mode target", timeout=10)
        assert listing.stdout == ""
        assert await discover(ssh, alpha.vm1_vpc_ip) == []
        await backend.teardown(spec.iqn)  # twice is fine
        assert await TgtBackend(ssh_b.runner("vm1")).describe(beta_info.iqn) == beta_info  # the other lab's stays
