"""Where the lab-in-a-box keeps its state and how it names what it creates.

Everything the sandbox makes on this machine is either under ``base_dir`` or named with ``prefix`` (network
namespaces ``<prefix>-...``, links ``<prefix>...``), so ``labbot sandbox down`` can find and remove it all, even
after a crash. Tests use their own base dir and prefix so they never touch a running demo.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_BASE_DIR = Path("/var/lib/labbot-sandbox")
DEFAULT_PREFIX = "lbx"
# L3 networks (by name, as the outer simulator defines them) that the host itself sits on: labbot reaches VMs
# there. Every other L3 network is an isolated segment the host cannot reach (the lab VPC).
DEFAULT_PUBLIC_L3 = frozenset({"sandbox-public"})
# The gateway of that network as the outer simulator defines it (198.18.0.10-198.18.3.250/22): the host's bridge.
DEFAULT_PUBLIC_GATEWAY = "198.18.0.1/22"
# Inside each VM these directories get a private overlay or mount, so the base dir must not be under them
# (the VM would not see its own files any more).
VM_PRIVATE_DIRS = ("/etc", "/dev", "/run", "/tmp", "/var/tmp", "/root", "/opt", "/usr/local", "/proc", "/sys")
# Images that stand for a ZStack ISO OS: their VMs have the installer where that OS keeps it.
DEFAULT_ZSTACK_IMAGES = frozenset({"sandbox-mn"})

_PREFIX = re.compile(r"^[a-z]{2,4}$")
SANDBOX_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544 benchmarking space: never routed anywhere


def nested_sim_command() -> list[str]:
    """How the installer starts the nested ZStack simulator on VM2 (the venv's python, as argv)."""
    every_address = "0.0.0.0"  # noqa: S104 - VM2's management node listens on all its addresses, like ZStack
    return [
        sys.executable, "-m", "bot.cli", "sim", "zstack", "--role", "nested", "--host", every_address,
        "--port", "8080", "--hooks", "sandbox",
    ]


def _seconds(value: str | None) -> float:
    try:
        seconds = float(value or 0)
    except ValueError:
        raise ConfigError(f"LABBOT_SANDBOX_INSTALL_SECONDS={value!r} is not a number of seconds") from None
    if not 0 <= seconds <= 3600:
        raise ConfigError(f"LABBOT_SANDBOX_INSTALL_SECONDS={value!r} must be between 0 and 3600")
    return seconds


@dataclass(frozen=True)
class SandboxConfig:
    """The sandbox's base directory, name prefix and network roles."""

    base_dir: Path = DEFAULT_BASE_DIR
    prefix: str = DEFAULT_PREFIX
    public_l3_names: frozenset[str] = DEFAULT_PUBLIC_L3
    public_gateway: str = DEFAULT_PUBLIC_GATEWAY  # made by ``up``; VMs' NIC plans name their own gateways
    # argv the fake installer runs on VM2 to start the nested simulator (tests may point it elsewhere).
    nested_sim: tuple[str, ...] = field(default_factory=lambda: tuple(nested_sim_command()))
    sshd_ready_timeout: float = 15.0
    zstack_images: frozenset[str] = DEFAULT_ZSTACK_IMAGES
    # How long the stand-in installer spends "installing packages" (LABBOT_SANDBOX_INSTALL_SECONDS): 0 by default;
    # benchmarks set it so the install takes the share of a build it takes on a real platform.
    install_seconds: float = field(default_factory=lambda: _seconds(os.environ.get("LABBOT_SANDBOX_INSTALL_SECONDS")))

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ConfigError(f"sandbox prefix {self.prefix!r} must be 2-4 lower-case letters")
        base = self.base_dir
        if not base.is_absolute():
            raise ConfigError(f"sandbox dir {base} must be an absolute path")
        for private in VM_PRIVATE_DIRS:
            if base == Path(private) or Path(private) in base.parents:
                raise ConfigError(f"sandbox dir {base} must not be under {private} (each VM gets a private {private})")
        if base == Path("/") or len(base.parts) < 3:
            raise ConfigError(f"sandbox dir {base} is too close to / to be removed safely")
        try:
            gateway = ipaddress.IPv4Interface(self.public_gateway)
        except ValueError:
            raise ConfigError(f"sandbox public gateway {self.public_gateway!r} is not an address/prefix") from None
        if not gateway.network.subnet_of(SANDBOX_NETWORK) or gateway.ip == gateway.network.network_address:
            raise ConfigError(f"sandbox public gateway {gateway} must be a host address inside {SANDBOX_NETWORK}")

    @classmethod
    def from_env(cls) -> SandboxConfig:
        """``LABBOT_SANDBOX_DIR``, ``LABBOT_SANDBOX_PREFIX`` and ``LABBOT_SANDBOX_PUBLIC`` override the defaults."""
        return cls(
            base_dir=Path(os.environ.get("LABBOT_SANDBOX_DIR", str(DEFAULT_BASE_DIR))),
            prefix=os.environ.get("LABBOT_SANDBOX_PREFIX", DEFAULT_PREFIX),
            public_gateway=os.environ.get("LABBOT_SANDBOX_PUBLIC", DEFAULT_PUBLIC_GATEWAY),
        )

    def public_ranges(self) -> dict[str, tuple[str, str, str, str]]:
        """(start, end, netmask, gateway) of each public L3 network, for the outer simulator's seed.

        The host bridge ``up`` makes carries the gateway, so the simulator must hand out addresses from the
        same subnet: a box with its own ``public_gateway`` (a test run next to a demo) gets its own range.
        """
        gateway = ipaddress.IPv4Interface(self.public_gateway)
        network = gateway.network
        start, end = network.network_address + 10, network.broadcast_address - 5
        span = (str(start), str(end), str(network.netmask), str(gateway.ip))
        return {name: span for name in self.public_l3_names}

    # --- names (interface names must stay within 15 characters) ---

    def vm_netns(self, vm_uuid: str) -> str:
        """The VM's network namespace."""
        return f"{self.prefix}-{short(vm_uuid)}"

    def segment_netns(self, l3_uuid: str) -> str:
        """The namespace holding an isolated L3 segment's bridge."""
        return f"{self.prefix}-net-{short(l3_uuid)}"

    def host_bridge(self, key: str) -> str:
        """A host-side bridge for a public segment (``key`` is a short hash of its subnet)."""
        return f"{self.prefix}b{key[:8]}"

    def veth_vm_side(self, vm_uuid: str, index: int) -> str:
        """The VM end of NIC ``index`` before it is renamed ``eth<index>`` inside the VM."""
        return f"{self.prefix}{short(vm_uuid)}e{index}"

    def veth_bridge_side(self, vm_uuid: str, index: int) -> str:
        """The bridge end of NIC ``index``."""
        return f"{self.prefix}{short(vm_uuid)}p{index}"

    # --- paths ---

    @property
    def vms_dir(self) -> Path:
        return self.base_dir / "vms"

    @property
    def volumes_dir(self) -> Path:
        return self.base_dir / "volumes"

    def vm_dir(self, vm_uuid: str) -> Path:
        """Everything of one VM: its sshd files, overlay layers, console log and state."""
        return self.vms_dir / short(vm_uuid)

    @property
    def images_dir(self) -> Path:
        return self.base_dir / "images"

    def image_dir(self, image_uuid: str) -> Path:
        """A root-volume template made from a VM (``labbot bake``): the VM's overlay upper layers, copied."""
        return self.images_dir / short(image_uuid)

    def volume_file(self, volume_uuid: str) -> Path:
        """A data volume's sparse backing file."""
        return self.volumes_dir / f"{volume_uuid}.img"


def short(uuid: str) -> str:
    """The first 8 hex digits of a uuid (with or without dashes), used in names."""
    digits = uuid.replace("-", "").lower()
    if not re.fullmatch(r"[0-9a-f]{8,32}", digits):
        raise ConfigError(f"{uuid!r} is not a uuid")
    return digits[:8]
