"""The seam between the ZStack simulator and the lab-in-a-box hosts.

The simulator keeps ZStack's semantics (inventories, states, jobs, errors); hooks make some calls touch the
machine for real: an outer ``CreateVmInstance`` starts a network-namespace host running sshd, a data volume
becomes a sparse file that VM1 sees as a disk, and the nested ZStack's iSCSI calls run a real discovery
from VM2's namespace. Without hooks (``NoHooks``) the simulator is purely in memory.

The simulator owns IP allocation (from the L3 network's IP ranges, as ZStack does) and tells the hook
which addresses each NIC got; the hook must make those addresses real.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NicPlan:
    """One NIC of a VM being started: which L3 network it is on and the address ZStack allocated."""

    l3_network_uuid: str
    l3_network_name: str
    ip: str
    netmask: str
    gateway: str
    is_default: bool


@dataclass(frozen=True)
class VmPlan:
    """What the simulator knows about a VM when it starts it."""

    vm_uuid: str
    name: str
    nics: list[NicPlan]
    ssh_public_keys: list[str] = field(default_factory=list)  # from the ``sshkey::`` system tag
    root_password: str | None = None  # from the ``rootPassword::`` system tag
    user_data: str | None = None  # from the ``userdata::`` system tag (base64 in ZStack)
    # The CPU mode (kvm/vm.cpuMode) passes vmx/svm to the guest: host-model or host-passthrough.
    nested_virtualization: bool = False
    image_name: str = ""  # the image it boots: what is on its disk (a ZStack ISO OS has the installer)
    image_uuid: str = ""  # a template made from another VM's root volume brings that VM's files


@dataclass(frozen=True)
class LunFound:
    """One LUN seen by a real iSCSI discovery; ``wwid`` is what Linux ``scsi_id -g -u`` would print."""

    lun_id: int
    wwid: str
    size: int  # bytes
    vendor: str = ""
    model: str = ""
    serial: str = ""


@dataclass(frozen=True)
class ImageFetched:
    """What a backup storage learned downloading an image: its format as ``qemu-img info`` reports it, its
    virtual size and its file size (bytes)."""

    format: str
    size: int
    actual_size: int


@dataclass(frozen=True)
class TargetFound:
    """One iSCSI target returned by discovery, with its LUNs."""

    iqn: str
    luns: list[LunFound]


class OuterHooks(Protocol):
    """Called by the ``outer`` simulator (the lab platform). Each may take seconds; raising fails the job."""

    async def vm_started(self, plan: VmPlan) -> None:
        """Make the VM exist and boot; return once its sshd accepts connections."""

    async def vm_stopped(self, vm_uuid: str) -> None:
        """Stop the VM (keep its disks)."""

    async def vm_expunged(self, vm_uuid: str) -> None:
        """Remove the VM and everything of it on the machine."""

    async def volume_attached(self, volume_uuid: str, size: int, vm_uuid: str) -> None:
        """Create the volume's backing file if needed and make VM ``vm_uuid`` see it as a disk."""

    async def volume_detached(self, volume_uuid: str, vm_uuid: str) -> None:
        """Make the VM stop seeing the disk (the data stays)."""

    async def volume_expunged(self, volume_uuid: str) -> None:
        """Delete the volume's backing file."""

    async def l3_network_deleted(self, l3_uuid: str) -> None:
        """Remove what made the L3 network's segment real (its VMs' NICs are gone already)."""

    async def root_volume_template_created(self, vm_uuid: str, image_uuid: str) -> int:
        """Copy the VM's root disk into a new image (VMs created from it start with those files); its size."""

    async def image_expunged(self, image_uuid: str) -> None:
        """Delete what an image made from a root volume keeps on the machine."""


class NestedHooks(Protocol):
    """Called by the ``nested`` simulator (the ZStack installed on VM2)."""

    async def discover_iscsi(self, ip: str, port: int, *, chap: tuple[str, str] | None = None) -> list[TargetFound]:
        """Run a real sendtargets discovery plus INQUIRY against ``ip:port`` from this host, logging in with the
        CHAP ``(user, secret)`` when given."""

    async def deploy_host(self, ip: str, port: int, username: str, password: str) -> None:
        """Log in to a KVM host over SSH with its password and deploy the agent (ZStack's AddKVMHost)."""

    async def check_login(self, ip: str, port: int, username: str, password: str) -> None:
        """Log in over SSH with a password, as ZStack does to deploy a backup storage agent."""

    async def fetch_image(self, url: str) -> ImageFetched:
        """Download the image at ``url`` from this host (the backup storage) and inspect it."""

    async def has_interface(self, name: str) -> bool:
        """Whether this host has network interface ``name`` (the KVM agent's physical interface check)."""

    async def hvm_cpu_flag(self, ip: str) -> str | None:
        """The host's hardware-virtualisation flag (``vmx``/``svm`` in its /proc/cpuinfo), or None: what the
        KVM agent's host facts report to AddKVMHost."""


SYNTHETIC_LUN_SIZE = 50 * 1024**3  # the profiles' data volume size, so capacity numbers look like a real lab


class NoHooks:
    """The pure in-memory simulator: every hook succeeds, and iSCSI discovery finds one synthetic target with
    one LUN, so the whole nested flow works without a machine."""

    async def vm_started(self, plan: VmPlan) -> None:
        """Nothing to start: the VM exists only in the simulator's model."""
        return None

    async def vm_stopped(self, vm_uuid: str) -> None:
        """Nothing to stop."""
        return None

    async def vm_expunged(self, vm_uuid: str) -> None:
        """Nothing to remove."""
        return None

    async def volume_attached(self, volume_uuid: str, size: int, vm_uuid: str) -> None:
        """No backing file: the volume exists only in the model."""
        return None

    async def volume_detached(self, volume_uuid: str, vm_uuid: str) -> None:
        """Nothing to hide."""
        return None

    async def volume_expunged(self, volume_uuid: str) -> None:
        """No file to delete."""
        return None

    async def deploy_host(self, ip: str, port: int, username: str, password: str) -> None:
        """No host to log in to: the deploy succeeds in the model."""
        return None

    async def check_login(self, ip: str, port: int, username: str, password: str) -> None:
        """No host to log in to."""
        return None

    async def l3_network_deleted(self, l3_uuid: str) -> None:
        """No segment to remove."""
        return None

    async def root_volume_template_created(self, vm_uuid: str, image_uuid: str) -> int:
        """No disk to copy: the template is as big as a typical installed root disk."""
        return 8 * 1024**3

    async def image_expunged(self, image_uuid: str) -> None:
        """No file to delete."""
        return None

    async def has_interface(self, name: str) -> bool:
        """Every interface exists in the pure in-memory model."""
        return True

    async def hvm_cpu_flag(self, ip: str) -> str | None:
        """An in-memory host is a physical one with VT-x."""
        return "vmx"

    async def fetch_image(self, url: str) -> ImageFetched:
        """No download: sizes as a typical image of that name would have (CirrOS small, others 10 GiB)."""
        if "cirros" in url.lower():
            return ImageFetched("qcow2", 117_440_512, 21_233_664)
        spread = int(hashlib.sha256(url.encode()).hexdigest()[:4], 16) % 512  # stable, so repeated runs agree
        return ImageFetched("qcow2", 10 * 1024**3, 1024**3 + spread * 1024**2)

    async def discover_iscsi(self, ip: str, port: int, *, chap: tuple[str, str] | None = None) -> list[TargetFound]:
        """One target with one 50 GiB LUN whose IQN, wwid and serial derive from ``ip:port`` (stable across runs,
        distinct per portal). The wwid has the shape Linux gives LIO LUNs: ``36001405`` + 25 hex digits."""
        digest = hashlib.sha256(f"{ip}:{port}".encode()).hexdigest()
        lun = LunFound(lun_id=1, wwid="36001405" + digest[:25], size=SYNTHETIC_LUN_SIZE, vendor="LIO-ORG",
                       model="labbot-sim", serial=digest[:32])
        return [TargetFound(iqn=f"iqn.2026-11.io.labbot:sim-{digest[:12]}", luns=[lun])]
