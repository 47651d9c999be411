"""The simulator hooks of the lab-in-a-box (the Protocols in ``sandbox.zstack_sim.hooks``).

``OuterSandboxHooks`` runs in the outer simulator (the lab platform): VMs become network namespaces with a
real sshd, data volumes become sparse files seen as virtio disks. ``NestedSandboxHooks`` runs in the nested
simulator, which the fake installer starts inside VM2, so its subprocesses run "on VM2": iSCSI discovery is
a real one across the lab's VPC to VM1's tgtd.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
from pathlib import Path

import asyncssh

from sandbox import images, network, system, vm, volumes
from sandbox.config import SandboxConfig
from sandbox.discovery import discover, local_initiator_name
from sandbox.lifecycle import write_runtime_files
from sandbox.vm import CPUINFO_FILE
from sandbox.zstack_sim.hooks import ImageFetched, TargetFound, VmPlan
from services.iscsi.initiator import INITIATOR_FILE

log = logging.getLogger(__name__)


class OuterSandboxHooks:
    """Makes the outer simulator's VMs and volumes real on this machine (needs root); an ``OuterHooks``."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig.from_env()
        self._segment_lock = asyncio.Lock()

    async def vm_started(self, plan: VmPlan) -> None:
        """Boot the VM; returns once its sshd accepts connections."""
        system.require_sandbox()
        await asyncio.to_thread(write_runtime_files, self.config)
        await vm.start_vm(self.config, plan, self._segment_lock)

    async def vm_stopped(self, vm_uuid: str) -> None:
        """Kill the VM's processes and remove its namespace; its files and disks stay."""
        await vm.stop_vm(self.config, vm_uuid)

    async def vm_expunged(self, vm_uuid: str) -> None:
        """Remove the VM and everything of it (the nested simulator it ran dies with it)."""
        await vm.expunge_vm(self.config, vm_uuid)

    async def volume_attached(self, volume_uuid: str, size: int, vm_uuid: str) -> None:
        """Create the sparse file if needed and show it in the VM under /dev/disk/by-id."""
        await asyncio.to_thread(volumes.attach, self.config, volume_uuid, size, vm_uuid)

    async def volume_detached(self, volume_uuid: str, vm_uuid: str) -> None:
        """Remove the disk from the VM's /dev/disk/by-id."""
        await asyncio.to_thread(volumes.detach, self.config, volume_uuid, vm_uuid)

    async def volume_expunged(self, volume_uuid: str) -> None:
        """Delete the volume's file."""
        await asyncio.to_thread(volumes.expunge, self.config, volume_uuid)

    async def l3_network_deleted(self, l3_uuid: str) -> None:
        """Remove the network's segment namespace (and the bridge in it): a deleted lab network leaves nothing."""
        async with self._segment_lock:
            await network.remove_private_segment(self.config, l3_uuid)

    async def root_volume_template_created(self, vm_uuid: str, image_uuid: str) -> int:
        """Copy the VM's disk (its files) into the image; VMs created from it start with them."""
        return await vm.copy_root_disk(self.config, vm_uuid, image_uuid)

    async def image_expunged(self, image_uuid: str) -> None:
        """Delete the image's copy of a VM's files, if it has one."""
        directory = self.config.image_dir(image_uuid)
        if directory.exists():
            await asyncio.to_thread(shutil.rmtree, directory)


# What the KVM host deploy leaves that labbot depends on: iscsi-initiator-utils, whose first start generates an
# initiator name only when none exists (iscsi-init.service), as ``iscsi-iname`` does on Red Hat systems.
_KVM_DEPLOY = (
    "f=/etc/iscsi/initiatorname.iscsi; [ -s $f ] && grep -q '^InitiatorName=' $f || "
    "{ mkdir -p /etc/iscsi && echo InitiatorName=iqn.1994-05.com.redhat:$(od -An -N6 -tx1 /dev/urandom | tr -d ' ') "
    "> $f; }"
)


# A real host deploy takes minutes; the sandbox's is one SSH login and a command, which on a loaded 2-core
# machine (every VM's sshd, a nested simulator per lab) can still take tens of seconds.
LOGIN_TIMEOUT = 90.0


class NestedSandboxHooks:
    """Answers the nested simulator's host calls for real from VM2 (a ``NestedHooks``): iSCSI discovery, and
    SSH logins with the password the API was given, which VM2's sshd accepts only if its userdata allowed it."""

    def __init__(self, initiator_file: Path = Path(INITIATOR_FILE), timeout: float = 15,
                 cpuinfo: Path | None = None) -> None:
        self.initiator_file = initiator_file
        self.timeout = timeout
        # A namespace VM has its own /proc/cpuinfo (bind-mounted); a container VM gets /etc/<CPUINFO_FILE>.
        container = Path("/etc") / CPUINFO_FILE
        self.cpuinfo = cpuinfo or (container if container.exists() else Path("/proc/cpuinfo"))

    async def hvm_cpu_flag(self, ip: str) -> str | None:
        """``vmx`` or ``svm`` when VM2's /proc/cpuinfo shows it (the lab adds VM2 itself as the KVM host, and
        this runs on VM2, whose cpuinfo the sandbox derives from its CPU mode), else None."""
        return hvm_flag(await asyncio.to_thread(self.cpuinfo.read_text))

    async def _ssh(self, ip: str, port: int, username: str, password: str, command: str) -> None:
        try:
            async with asyncio.timeout(LOGIN_TIMEOUT):
                async with asyncssh.connect(
                    ip, port, username=username, password=password, client_keys=None, known_hosts=None,
                    agent_path=None, config=None, kbdint_auth=False, preferred_auth=("password",),
                ) as conn:
                    await conn.run(command, check=True)
        except asyncssh.PermissionDenied:
            raise RuntimeError(f"ssh {username}@{ip}:{port}: Permission denied (password)") from None
        except asyncssh.ProcessError as err:
            raise RuntimeError(f"ssh {username}@{ip}:{port}: `{command[:60]}` exited {err.exit_status}") from None
        except (OSError, asyncssh.Error, TimeoutError) as err:
            raise RuntimeError(f"ssh {username}@{ip}:{port}: {type(err).__name__} {err}") from None

    async def deploy_host(self, ip: str, port: int, username: str, password: str) -> None:
        """Log in with the password and do the part of the KVM deploy labbot relies on (the initiator name)."""
        await self._ssh(ip, port, username, password, _KVM_DEPLOY)

    async def check_login(self, ip: str, port: int, username: str, password: str) -> None:
        """Log in with the password (the backup storage deploy)."""
        await self._ssh(ip, port, username, password, "true")

    async def fetch_image(self, url: str) -> ImageFetched:
        """Download the image for real, from VM2 (where this runs), and read its format as qemu-img would."""
        return await asyncio.to_thread(images.download_and_inspect, url, timeout=self.timeout * 4)

    async def discover_iscsi(self, ip: str, port: int, *, chap: tuple[str, str] | None = None) -> list[TargetFound]:
        """SendTargets discovery plus INQUIRY of each disk LUN, as VM2's initiator (with CHAP when given)."""
        initiator = local_initiator_name(self.initiator_file)
        return await discover(ip, port, initiator=initiator, timeout=self.timeout, chap=chap)

    async def has_interface(self, name: str) -> bool:
        """Whether VM2 (whose network namespace this simulator runs in) has interface ``name``."""
        try:
            socket.if_nametoindex(name)
        except OSError:
            return False
        return True

def hvm_flag(cpuinfo: str) -> str | None:
    """The first ``vmx`` or ``svm`` among the CPU flags, as kvmagent's host facts report it, or None."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            for flag in ("vmx", "svm"):
                if flag in value.split():
                    return flag
    return None
