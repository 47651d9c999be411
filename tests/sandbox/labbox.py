"""Test support: a private lab-in-a-box per test module, and labs (VM1 + VM2 + data volume) in it.

Each box has its own base dir; its name prefix (``t`` + two letters) and public network (198.18.50-249.0/24)
are derived from the test process, so two test runs on one machine, or a running demo (``lbx``,
198.18.0.0/22), never touch each other. ``close`` runs the real ``down``, so a failing test still leaves
nothing behind. Without root or the packages, tests skip with the reason, except in CI (``CI`` set), where
they must run and so fail instead.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import sys
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sandbox import lifecycle, system
from sandbox.config import SandboxConfig, nested_sim_command
from sandbox.hooks import OuterSandboxHooks
from sandbox.zstack_sim.hooks import NicPlan, VmPlan
from services.ssh import HostAddress, KeyPair, LabSSH, MemoryHostKeyStore, Target, generate_keypair

T = TypeVar("T")

_RUN = os.getpid()
PREFIX = "t" + "abcdefghijklmnopqrstuvwxyz"[(_RUN // 26) % 26] + "abcdefghijklmnopqrstuvwxyz"[_RUN % 26]
PUBLIC_L3 = ("0b11c0de" + "0" * 24, "test-public")
VPC_L3 = ("0b12c0de" + "0" * 24, "test-vpc")  # a segment of this run's own (its namespace carries PREFIX)
PUBLIC_NET, VPC_NET = f"198.18.{50 + _RUN % 200}", "198.19.200"
NETMASK = "255.255.255.0"
VM2_ROOT_PASSWORD = "Vm2-Root-Pass"  # a test VM2 root password, sent as rootPassword:: like labbot
PASSWORD_USERDATA = base64.b64encode(b"#cloud-config\nssh_pwauth: true\n").decode()  # as labbot sends for VM2


def require_sandbox() -> None:
    """Skip (or fail, in CI) when this machine cannot run the lab-in-a-box."""
    problems = system.missing_requirements()
    if problems:
        reason = "lab-in-a-box unavailable: " + "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run the sandbox tests)")
        pytest.skip(reason)


@dataclass(frozen=True)
class Lab:
    """One lab in the box: VM1 on both networks, VM2 on the VPC only, a data volume on VM1."""

    name: str
    key: KeyPair
    vm1: VmPlan
    vm2: VmPlan
    volume_uuid: str
    volume_size: int

    @property
    def vm1_public_ip(self) -> str:
        return self.vm1.nics[0].ip

    @property
    def vm1_vpc_ip(self) -> str:
        return self.vm1.nics[1].ip

    @property
    def vm2_ip(self) -> str:
        return self.vm2.nics[0].ip

    @property
    def vm2_initiator(self) -> str:
        """The initiator name labbot would write on this lab's VM2, which has none (a fresh ZStack ISO host)."""
        return f"iqn.2026-11.io.labbot:{self.name}.vm2"

    def ssh(self, store: MemoryHostKeyStore | None = None, **options: Any) -> LabSSH:
        """A new SSH session to this lab (VM2 through VM1)."""
        return LabSSH(
            self.name,
            vm1=HostAddress(self.vm1_public_ip),
            vm2=HostAddress(self.vm2_ip),
            username="root",
            key=self.key,
            host_keys=store if store is not None else MemoryHostKeyStore(),
            **options,
        )


class LabBox:
    """A private sandbox for one test module."""

    def __init__(self, name: str, *, nested_sim: tuple[str, ...] | None = None) -> None:
        base = Path(f"/var/lib/labbot-sandbox-test-{name}-{os.getpid()}")
        self.config = SandboxConfig(
            base_dir=base,
            prefix=PREFIX,
            public_l3_names=frozenset({PUBLIC_L3[1]}),
            public_gateway=f"{PUBLIC_NET}.1/24",
            nested_sim=nested_sim or tuple(nested_sim_command()),  # the real nested simulator
        )
        self.hooks = OuterSandboxHooks(self.config)
        self._hosts = itertools.count(10)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run set-up or tear-down work from a synchronous (module-scoped) fixture."""
        return asyncio.run(coro)

    def _nic(self, l3: tuple[str, str], net: str, host: int, default: bool) -> NicPlan:
        return NicPlan(l3[0], l3[1], f"{net}.{host}", NETMASK, f"{net}.1", default)

    def plan(self, name: str, key: KeyPair, *, public: bool) -> VmPlan:
        """A VM plan with fresh addresses: public + VPC NICs, or VPC only."""
        host = next(self._hosts)
        nics = [self._nic(VPC_L3, VPC_NET, host, default=not public)]
        if public:
            nics.insert(0, self._nic(PUBLIC_L3, PUBLIC_NET, host, default=True))
        # VM2 (VPC only) becomes the nested KVM host: its CPU mode passes vmx/svm through, as labbot arranges.
        return VmPlan(vm_uuid=uuid.uuid4().hex, name=name, nics=nics, ssh_public_keys=[key.public_openssh],
                      nested_virtualization=not public)

    async def make_lab(self, name: str, *, volume_size: int = 50 * 1024**3) -> Lab:
        """Boot VM1 and VM2 (concurrently, as the platform would) and attach a data volume to VM1."""
        key = generate_keypair(f"labbot@{name}")
        vm1 = self.plan(f"{name}-vm1", key, public=True)
        vm2 = replace(self.plan(f"{name}-vm2", key, public=False), root_password=VM2_ROOT_PASSWORD,
                      user_data=PASSWORD_USERDATA,  # as labbot creates VM2: the nested ZStack logs in with it
                      image_name=next(iter(self.config.zstack_images)))  # a ZStack ISO OS: the installer is in it
        await asyncio.gather(self.hooks.vm_started(vm1), self.hooks.vm_started(vm2))
        volume = uuid.uuid4().hex
        await self.hooks.volume_attached(volume, volume_size, vm1.vm_uuid)
        return Lab(name=name, key=key, vm1=vm1, vm2=vm2, volume_uuid=volume, volume_size=volume_size)

    def close(self) -> lifecycle.DownReport:
        """Remove everything of the box (the real ``labbot sandbox down``)."""
        return self.run(lifecycle.down(self.config))


def sshd_children(box: LabBox, vm: VmPlan) -> list[int]:
    """The per-connection sshd processes of a VM (sshd children of its listening sshd; tgtd is a child too)."""
    listener = int((box.config.vm_dir(vm.vm_uuid) / "pid").read_text())
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == listener and comm in {"sshd", "sshd-session"}:
                children.append(int(entry))
    return children


async def drop_connections(box: LabBox, vm: VmPlan) -> int:
    """Cut every SSH connection to ``vm`` from the server side, as a network drop or VM hiccup would."""
    killed = sshd_children(box, vm)
    for pid in killed:
        os.kill(pid, 9)
    for _ in range(100):
        if not any(system.pid_alive(p) for p in killed):
            break
        await asyncio.sleep(0.02)
    return len(killed)


PROJECT = Path(__file__).resolve().parents[2]


async def python_on(ssh: LabSSH, target: Target, code: str, *, timeout: float = 60) -> Any:
    """Run Python ``code`` with labbot's interpreter on a VM (as the nested simulator would); returns its JSON output.

    ``code`` must print one JSON document. The VM sees the project through the host file system.
    """
    import json
    import shlex

    command = f"cd {shlex.quote(str(PROJECT))} && {shlex.quote(sys.executable)} -c {shlex.quote(code)}"
    result = await ssh.run(target, command, timeout=timeout, check=True)
    return json.loads(result.stdout)
