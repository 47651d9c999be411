"""The compose lab-in-a-box without Docker: the simulator's hooks and a VM container's agent, for real.

The agent runs in a network namespace standing in for the ``vm1`` container (its compose-assigned address on
a veth), with its files under a temporary root; the hooks run here, as in the outer simulator's container.
After ``vm_started`` we SSH with the lab's key to the address ZStack allocated, which proves the agent added
the address and started sshd with that key; ``vm_expunged`` must take all of it away again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from sandbox.zstack_sim.hooks import NicPlan, VmPlan

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docker"))

from lab_in_a_box.hooks import ComposeHooks  # noqa: E402
from lab_in_a_box.protocol import disk_path  # noqa: E402

SUBNET = "198.19.241"  # this test's "lab-public": the host end is .1, the container's own address .253
GiB = 1024**3


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "openssl", "/usr/sbin/sshd"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install iproute2 openssl openssh-server)"
    return None


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


@dataclass
class Box:
    """A stand-in vm1 container: its namespace, its files, the shared /labs, and the hooks driving it."""

    netns: str
    root: Path
    labs: Path
    hooks: ComposeHooks
    client_key: asyncssh.SSHKey

    def addresses(self) -> str:
        return sh("ip", "netns", "exec", self.netns, "ip", "-4", "-o", "addr", "show")

    def plan(self, *, ip: str = f"{SUBNET}.10", name: str = "labbot-demo-vm1", vm_uuid: str | None = None) -> VmPlan:
        nic = NicPlan(l3_network_uuid="l3", l3_network_name="sandbox-public", ip=ip, netmask="255.255.255.0",
                      gateway=f"{SUBNET}.1", is_default=True)
        return VmPlan(vm_uuid=vm_uuid or uuidlib.uuid4().hex, name=name, nics=[nic],
                      ssh_public_keys=[self.client_key.export_public_key("openssh").decode()],
                      root_password="lab-root-pw")


@pytest.fixture
def namespace() -> Iterator[str]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    tag = uuidlib.uuid4().hex[:6]
    netns, host_end, box_end = f"lbxc-{tag}", f"lbxc{tag}h", f"lbxc{tag}v"
    sh("ip", "netns", "add", netns)
    try:
        sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", box_end)
        sh("ip", "link", "set", box_end, "netns", netns)
        sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", host_end)
        sh("ip", "link", "set", host_end, "up")
        for command in (["ip", "link", "set", box_end, "name", "eth0"], ["ip", "addr", "add", f"{SUBNET}.253/24",
                        "dev", "eth0"], ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"]):
            sh("ip", "netns", "exec", netns, *command)
        yield netns
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


@pytest.fixture
async def box(namespace: str, tmp_path: Path) -> AsyncIterator[Box]:
    root, labs = tmp_path / "root", tmp_path / "labs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'docker'}{os.pathsep}{ROOT}"}
    # tgtadm's control port 61 has no tgtd behind it: the agent must cope (and never touch the host's tgtd).
    agent = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", namespace, sys.executable, "-m", "lab_in_a_box.agent", "--role", "vm1",
        "--labs", str(labs), "--root", str(root), "--interval", "0.05", "--tgt-control-port", "61", env=env,
        stdout=(tmp_path / "agent.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        yield Box(namespace, root, labs, ComposeHooks(labs, timeout=15, poll=0.05),
                  asyncssh.generate_private_key("ssh-ed25519"))
    finally:
        agent.terminate()
        await asyncio.wait_for(agent.wait(), 15)
        print((tmp_path / "agent.log").read_text()[-3000:])


@pytest.mark.sandbox
async def test_a_vm_is_started_reached_with_its_key_and_wiped(box: Box) -> None:
    plan = box.plan()
    await box.hooks.vm_started(plan)
    assert f"inet {SUBNET}.10/24" in box.addresses()
    async with asyncssh.connect(f"{SUBNET}.10", username="root", client_keys=[box.client_key], known_hosts=None,
                                connect_timeout=10) as conn:
        result = await conn.run("echo reached", check=True, timeout=10)
        assert result.stdout == "reached\n"
    shadow = (box.root / "etc" / "shadow").read_text()
    assert shadow.startswith("root:$6$") and "daemon:*:" in shadow
    assert (box.root / "etc/iscsi/initiatorname.iscsi").read_text() == \
        f"InitiatorName=iqn.2026-11.io.labbot.sandbox:{plan.vm_uuid[:8]}\n"
    assert "LABBOT_NESTED_SIM=" in (box.root / "etc/labbot-sandbox.env").read_text()

    volume = uuidlib.uuid4().hex
    await box.hooks.volume_attached(volume, GiB, plan.vm_uuid)
    link = box.root / "dev/disk/by-id" / f"virtio-{volume[:20]}"
    assert link.resolve() == disk_path(box.labs, volume) and disk_path(box.labs, volume).stat().st_size == GiB

    with pytest.raises(RuntimeError, match="holds one lab at a time"):
        await box.hooks.vm_started(box.plan(name="labbot-other-vm1"))

    # The nested ZStack the lab's installer started must not outlive the lab.
    nested = subprocess.Popen(["sleep", "60"])
    (box.root / "run").mkdir(exist_ok=True)
    (box.root / "run/zstack-sandbox-mn.pid").write_text(f"{nested.pid}\n")
    await box.hooks.volume_detached(volume, plan.vm_uuid)
    assert not link.exists() and disk_path(box.labs, volume).exists()
    await box.hooks.volume_expunged(volume)
    await box.hooks.vm_expunged(plan.vm_uuid)
    assert f"{SUBNET}.10/" not in box.addresses()
    assert nested.wait(10) != 0  # killed
    assert not (box.root / "var/lib/labbot-vm/ssh").exists() and not disk_path(box.labs, volume).exists()
    with pytest.raises(OSError):
        await asyncssh.connect(f"{SUBNET}.10", username="root", client_keys=[box.client_key], known_hosts=None,
                               connect_timeout=2)

    await box.hooks.vm_started(box.plan(name="labbot-next-vm1"))  # the next lab gets the container
    assert f"inet {SUBNET}.10/24" in box.addresses()


@pytest.mark.sandbox
async def test_an_address_the_container_cannot_hold_is_an_error_not_a_hang(box: Box) -> None:
    with pytest.raises(RuntimeError, match=r"no interface of the vm1 container is on a network containing 10\.9\.9\.9"):
        await box.hooks.vm_started(box.plan(ip="10.9.9.9"))


async def test_without_the_container_the_hooks_say_what_is_missing(tmp_path: Path) -> None:
    hooks = ComposeHooks(tmp_path, timeout=0.3, poll=0.05)
    plan = VmPlan(vm_uuid=uuidlib.uuid4().hex, name="labbot-demo-vm2", nics=[])
    with pytest.raises(RuntimeError, match=r"waiting for the vm2 container to apply labbot-demo-vm2 .* is the "
                                           r"container running"):
        await hooks.vm_started(plan)
    with pytest.raises(RuntimeError, match="only has a lab's vm1 and vm2 containers"):
        await hooks.vm_started(VmPlan(vm_uuid=uuidlib.uuid4().hex, name="webserver", nics=[]))
