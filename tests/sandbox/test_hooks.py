"""The outer simulator's hooks for real: VMs as namespaces with sshd, networks, disks, stop/start/expunge."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import asyncssh
import pytest

from sandbox import system
from sandbox.system import SandboxError
from sandbox.zstack_sim.hooks import NicPlan
from services.ssh import MemoryHostKeyStore, generate_keypair
from tests.sandbox.labbox import PASSWORD_USERDATA, Lab, LabBox, require_sandbox

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def box() -> Iterator[LabBox]:
    require_sandbox()
    box = LabBox("hooks")
    try:
        yield box
    finally:
        box.close()


async def test_password_login_needs_ssh_pwauth_in_the_userdata_as_cloud_init_does(box: LabBox, lab: Lab) -> None:
    cloud_config = "#cloud-config\nssh_pwauth: false\n"
    plans = {
        "none": replace(box.plan("pw-none", lab.key, public=True), root_password="Sandbox-Pass-2"),
        "false": replace(box.plan("pw-false", lab.key, public=True), root_password="Sandbox-Pass-2",
                         user_data=base64.b64encode(cloud_config.encode()).decode()),
    }
    try:
        for plan in plans.values():
            await box.hooks.vm_started(plan)
            with pytest.raises(asyncssh.PermissionDenied):  # stock RHEL cloud.cfg: ssh_pwauth 0
                await asyncssh.connect(plan.nics[0].ip, username="root", password="Sandbox-Pass-2", client_keys=None,
                                       known_hosts=None, agent_path=None, config=None)
    finally:
        for plan in plans.values():
            await box.hooks.vm_expunged(plan.vm_uuid)


@pytest.fixture(scope="module")
def lab(box: LabBox) -> Lab:
    return box.run(box.make_lab("hooklab", volume_size=50 * 1024**3))


async def test_a_started_vm_accepts_ssh_at_once_and_looks_like_a_vm(lab: Lab) -> None:
    async with lab.ssh() as ssh:  # no wait_ready: vm_started returned only once sshd listened
        vm1 = await ssh.run("vm1", "hostname; cat /proc/sys/net/ipv4/ip_forward; ip -4 -o addr show scope global; "
                                   "ip route show default; ps -o comm= -p 1", timeout=10)
        vm2 = await ssh.run("vm2", "ip route show default | wc -l; cat /etc/iscsi/initiatorname.iscsi 2>/dev/null",
                            timeout=10, check=False)
    hostname, forward, *rest = vm1.stdout.splitlines()
    assert (hostname, forward) == ("hooklab-vm1", "0")  # a jump host, not a router
    addresses = " ".join(rest)
    assert f"eth0    inet {lab.vm1_public_ip}/24" in addresses and f"eth1    inet {lab.vm1_vpc_ip}/24" in addresses
    assert f"default via {lab.vm1.nics[0].gateway} dev eth0" in addresses
    assert rest[-1] == "sshd"  # the VM's PID 1
    assert vm2.stdout.splitlines() == ["0"]  # VM2 has no way out but the VPC, and no initiator name before a
    # KVM host deploy (or labbot) writes one: `cat` found nothing


async def test_the_host_cannot_route_to_the_vpc() -> None:
    result = await system.run("ip", "route", "get", "198.19.200.250", check=False)
    assert result.returncode != 0 and "No route to host" in result.stderr  # the sandbox's guard route
    with pytest.raises(OSError):  # fails here, at once: nothing leaves the machine
        await asyncio.wait_for(asyncio.open_connection("198.19.200.250", 22), 2)


async def test_a_host_that_forwards_still_keeps_vm_traffic_on_the_machine(lab: Lab) -> None:
    # A stand-in for a VM's side of a bridge, on a host that forwards (only on this link, and only route lookups:
    # no packet is sent): a packet from a sandbox address to the outside is refused, one inside is routed.
    link = "lbgtest0"
    await system.ip("link", "add", link, "type", "veth", "peer", "name", "lbgtest1")
    try:
        await system.ip("addr", "add", "198.19.254.1/24", "dev", link)
        await system.ip("link", "set", link, "up")
        await system.run("sysctl", "-qw", f"net.ipv4.conf.{link}.forwarding=1")
        out = await system.ip("route", "get", "10.255.255.53", "from", "198.19.254.2", "iif", link, check=False)
        assert out.returncode != 0 and "unreachable" in out.stderr, (out.stdout, out.stderr)
        inside = await system.ip("route", "get", "198.19.254.9", "from", "198.19.254.2", "iif", link, check=False)
        assert inside.returncode == 0 and f"dev {link}" in inside.stdout, (inside.stdout, inside.stderr)
    finally:
        await system.ip("link", "del", link, check=False)


async def test_each_vm_has_private_etc_root_tmp_and_run(box: LabBox, lab: Lab) -> None:
    marker = f"labbot-{uuid.uuid4().hex[:8]}"
    async with lab.ssh() as ssh:
        await ssh.run("vm1", f"for d in /etc /root /tmp /var/tmp /run; do echo x > $d/{marker}; done", timeout=10)
        seen_on_vm2 = await ssh.run("vm2", f"ls /etc/{marker} /root/{marker} /tmp/{marker} /run/{marker} 2>&1 | "
                                           "grep -c 'No such file'", timeout=10, check=False)
    assert seen_on_vm2.stdout.strip() == "4"
    for directory in ("/etc", "/root", "/tmp", "/var/tmp", "/run"):
        assert not os.path.exists(f"{directory}/{marker}")  # and the host's stay untouched


async def test_volumes_appear_as_virtio_disks_and_go_away(box: LabBox, lab: Lab) -> None:
    by_id = f"/dev/disk/by-id/virtio-{lab.volume_uuid[:20]}"
    async with lab.ssh() as ssh:
        size = await ssh.run("vm1", f"stat -L -c %s {by_id}", timeout=10)
        assert size.stdout.strip() == str(50 * 1024**3)
        assert not (await ssh.run("vm2", f"test -e {by_id}", timeout=10, check=False)).ok
        backing = box.config.volume_file(lab.volume_uuid)
        assert backing.stat().st_blocks * 512 < 1024**2  # sparse: 50 GB apparent, nothing allocated
        extra = uuid.uuid4().hex
        await box.hooks.volume_attached(extra, 1024**2, lab.vm1.vm_uuid)
        assert (await ssh.run("vm1", f"test -e /dev/disk/by-id/virtio-{extra[:20]}", timeout=10, check=False)).ok
        await box.hooks.volume_detached(extra, lab.vm1.vm_uuid)
        assert not (await ssh.run("vm1", f"test -e /dev/disk/by-id/virtio-{extra[:20]}", timeout=10,
                                  check=False)).ok
        assert box.config.volume_file(extra).exists()  # detached, not deleted
        await box.hooks.volume_expunged(extra)
        assert not box.config.volume_file(extra).exists()


async def test_stop_start_keeps_files_and_host_key_expunge_removes_all(box: LabBox) -> None:
    key = generate_keypair()
    plan = box.plan("cycle-vm", key, public=True)
    await box.hooks.vm_started(plan)
    store = MemoryHostKeyStore()
    lab = Lab("cycle", key, plan, plan, "0" * 32, 0)
    async with lab.ssh(store) as ssh:
        await ssh.run("vm1", "echo kept > /root/note", timeout=10)
    inode = system.netns_inode(box.config.vm_netns(plan.vm_uuid))
    await box.hooks.vm_stopped(plan.vm_uuid)
    assert box.config.vm_netns(plan.vm_uuid) not in await system.list_netns()
    assert inode is not None and not system.pids_in_netns({inode})
    await box.hooks.vm_started(plan)
    async with lab.ssh(store) as ssh:  # same pinned host key after the reboot
        assert (await ssh.run("vm1", "cat /root/note", timeout=10)).stdout == "kept\n"
    await box.hooks.vm_expunged(plan.vm_uuid)
    assert not box.config.vm_dir(plan.vm_uuid).exists()
    assert box.config.vm_netns(plan.vm_uuid) not in await system.list_netns()
    assert not [link for link in await system.list_links() if plan.vm_uuid[:8] in link]


async def test_root_password_from_the_plan_works_only_in_that_vm(
    box: LabBox, lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plan = replace(box.plan("pw-vm", lab.key, public=True), root_password="Sandbox-Pass-1",
                   user_data=PASSWORD_USERDATA)
    await box.hooks.vm_started(plan)
    assert "Sandbox-Pass-1" not in caplog.text
    assert "Sandbox-Pass-1" not in Path("/etc/shadow").read_text()  # hashed, and only in the VM's own shadow
    try:
        async with asyncssh.connect(plan.nics[0].ip, username="root", password="Sandbox-Pass-1", client_keys=None,
                                    known_hosts=None, agent_path=None, config=None) as conn:  # tests only
            assert (await conn.run("hostname", check=True)).stdout == "pw-vm\n"
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect(lab.vm1_public_ip, username="root", password="Sandbox-Pass-1", client_keys=None,
                                   known_hosts=None, agent_path=None, config=None)
    finally:
        await box.hooks.vm_expunged(plan.vm_uuid)


async def test_addresses_outside_the_benchmark_range_are_refused_and_nothing_is_left(box: LabBox, lab: Lab) -> None:
    bad = replace(box.plan("bad-vm", lab.key, public=False),
                  nics=[NicPlan("0e15e000" * 4, "elsewhere", "10.1.2.3", "255.255.255.0", "10.1.2.1", True)])
    with pytest.raises(SandboxError, match=r"outside 198\.18\.0\.0/15"):
        await box.hooks.vm_started(bad)
    assert box.config.vm_netns(bad.vm_uuid) not in await system.list_netns()
    assert not [link for link in await system.list_links() if bad.vm_uuid[:8] in link]
