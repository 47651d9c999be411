"""``labbot sandbox up|down|status``: prepare, inspect and completely remove the lab-in-a-box.

``down`` finds what to remove by name and by record, so it also cleans up after a crashed or killed run: every
network namespace named ``<prefix>-<8 hex>`` or ``<prefix>-net-<8 hex>``, every host link named like the
sandbox's bridges and veths, every process inside those namespaces (or inside a namespace a VM record
remembers, even if its name is gone, or started from this base dir's sshd config), and the base dir itself.
The patterns are exact so that another sandbox with another prefix is left alone.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import images, network, system, vm
from sandbox.config import SandboxConfig

log = logging.getLogger(__name__)

_ANY_SANDBOX_BRIDGE = re.compile(r"^[a-z]{2,4}b[0-9a-f]{8}$")


def _netns_pattern(config: SandboxConfig) -> re.Pattern[str]:
    return re.compile(rf"^{config.prefix}-(net-)?[0-9a-f]{{8}}$")


def _link_pattern(config: SandboxConfig) -> re.Pattern[str]:
    return re.compile(rf"^{config.prefix}(b[0-9a-f]{{8}}|[0-9a-f]{{8}}[ep]\d+)$")


@dataclass
class DownReport:
    """What ``down`` removed."""

    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    processes: int = 0
    removed_dir: bool = False

    def summary(self) -> str:
        """One line for the CLI."""
        return (
            f"removed {len(self.namespaces)} namespaces, {len(self.links)} links, {self.processes} processes"
            + (", and the sandbox directory" if self.removed_dir else "")
        )


@dataclass
class VmStatus:
    """One VM as ``status`` shows it."""

    uuid: str
    name: str
    netns: str
    addresses: list[str]
    running: bool
    volumes: list[str]


@dataclass
class Status:
    """The sandbox at a glance."""

    base_dir: Path
    vms: list[VmStatus]
    namespaces: list[str]
    links: list[str]
    volumes: dict[str, tuple[int, int]]  # file name -> (apparent size, bytes allocated)
    stray_namespaces: list[str]


def write_runtime_files(config: SandboxConfig) -> None:
    """Files the VMs read through the host file system: which python runs labbot (for the fake installer)."""
    config.base_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (config.base_dir / "python").write_text(sys.executable + "\n")
    (config.base_dir / "prefix").write_text(config.prefix + "\n")


async def up(config: SandboxConfig) -> Status:
    """Check this machine can run the sandbox, create the base dir and the public bridge (the VMs come later)."""
    system.require_sandbox()
    write_runtime_files(config)
    await asyncio.to_thread(images.ensure_nested_image)
    gateway = ipaddress.IPv4Interface(config.public_gateway)
    await network.ensure_public_bridge(config, str(gateway.ip), str(gateway.netmask))
    return await status(config)


def _sshd_processes_of(config: SandboxConfig) -> list[int]:
    marker = f"{config.vms_dir}/".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"/usr/sbin/sshd\0") and marker in cmdline:
                found.append(int(entry))
    return found


async def down(config: SandboxConfig) -> DownReport:
    """Remove every namespace, link, process and file of this sandbox, including a crashed run's leftovers."""
    system.require_sandbox()
    report = DownReport()
    names = [n for n in await system.list_netns() if _netns_pattern(config).match(n)]
    inodes = {i for i in (system.netns_inode(n) for n in names) if i}
    inodes |= {r.netns_inode for r in vm.all_records(config) if r.netns_inode}
    for pid in _sshd_processes_of(config):
        try:
            inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
        except OSError:
            continue
    inodes.discard(os.stat("/proc/self/ns/net").st_ino)  # never the host's own namespace
    if inodes:
        report.processes = await vm.kill_netns_processes(inodes)
    for name in names:
        await system.run("ip", "netns", "del", name, check=False)
        report.namespaces.append(name)
    for link in await system.list_links():
        if _link_pattern(config).match(link):
            await system.ip("link", "del", link, check=False)
            report.links.append(link)
    if not any(_ANY_SANDBOX_BRIDGE.match(link) for link in await system.list_links()):
        await network.remove_guard_route()  # no other sandbox (another prefix) still relies on it
    if config.base_dir.exists():
        await asyncio.to_thread(shutil.rmtree, config.base_dir)
        report.removed_dir = True
    log.info("sandbox down: %s", report.summary())
    return report


async def status(config: SandboxConfig) -> Status:
    """VMs, namespaces, links and volumes of this sandbox."""
    system.require_sandbox()
    namespaces = [n for n in await system.list_netns() if _netns_pattern(config).match(n)]
    vms = []
    for record in vm.all_records(config):
        pid_text = (config.vm_dir(record.uuid) / "pid").read_text().strip() if (
            config.vm_dir(record.uuid) / "pid"
        ).exists() else ""
        running = record.netns in namespaces and pid_text.isdigit() and system.pid_alive(int(pid_text))
        by_id = config.vm_dir(record.uuid) / "by-id"
        vms.append(
            VmStatus(
                uuid=record.uuid, name=record.name, netns=record.netns,
                addresses=[f"{n['device']} {n['ip']} ({n['l3']})" for n in record.nics], running=running,
                volumes=sorted(p.name for p in by_id.iterdir()) if by_id.is_dir() else [],
            )
        )
    volumes = {}
    if config.volumes_dir.is_dir():
        for path in sorted(config.volumes_dir.glob("*.img")):
            info = path.stat()
            volumes[path.name] = (info.st_size, info.st_blocks * 512)
    known = {v.netns for v in vms}
    return Status(
        base_dir=config.base_dir,
        vms=vms,
        namespaces=namespaces,
        links=[link for link in await system.list_links() if _link_pattern(config).match(link)],
        volumes=volumes,
        stray_namespaces=[n for n in namespaces if n not in known and "-net-" not in n],
    )
