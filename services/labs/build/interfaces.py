"""Which network interface of a VM carries a given address (read over SSH, bounded).

The nested flat network's L2 bridges VM2's NIC on the lab network; its name depends on the image (``eth0`` on
cloud images with ``net.ifnames=0``, ``ens3``/``enp1s0`` on a ZStack ISO install), so it is read from VM2
rather than assumed.
"""

from __future__ import annotations

import ipaddress
import logging

from config.profiles import INTERFACE_NAME
from services.errors import ExternalError
from services.i18n import _
from services.shell import quote
from services.ssh.result import Runner

log = logging.getLogger(__name__)

_MAX_OUTPUT = 65536  # `ip -o -4 addr` of any sane VM is far below this; more is cut on the VM


class InterfaceNotFoundError(ExternalError):
    """No interface (with a usable name) carries the address."""


async def interface_carrying(run: Runner, ip: str) -> str:
    """The name of the interface that holds ``ip`` (``run`` executes on the VM)."""
    address = str(ipaddress.IPv4Address(ip))
    result = await run(f"ip -o -4 addr show | head -c {_MAX_OUTPUT}")
    if not result.ok:
        raise InterfaceNotFoundError(
            _("cannot list the addresses of VM {quote}: {value}").format(
                quote=quote(address), value=result.stderr.strip()[-200:] or f"exit status {result.exit_status}"
            )
        )
    return parse_interface(result.stdout, address)


def parse_interface(listing: str, ip: str) -> str:
    """From ``ip -o -4 addr show`` output (``2: eth0    inet 10.0.0.5/24 brd ...``), the device holding ``ip``."""
    seen: list[str] = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] != "inet":
            continue
        device, local = fields[1].split("@", 1)[0], fields[3].split("/", 1)[0]
        seen.append(f"{device} {local}")
        if local == ip:
            if not INTERFACE_NAME.fullmatch(device):
                raise InterfaceNotFoundError(
                    _("the interface holding {ip} has an unusable name {value!r}").format(ip=ip, value=device[:40])
                )
            return device
    raise InterfaceNotFoundError(
        _("no interface holds {ip} (seen: {value})").format(ip=ip, value=", ".join(seen[:10]) or "no IPv4 address")
    )
