"""The sandbox's layer 2: one bridge per L3 network, one veth per VM NIC.

A *public* L3 network (the lab platform's public net) is a bridge in the host's own namespace carrying the
network's gateway address, so labbot on the host reaches VMs there. Every other L3 network (a lab VPC) is a
bridge inside a namespace of its own that has no address and no link to the host: VMs on it reach each other,
and the host reaches them only by going through a VM that also sits on a public network (the jump host).

Only 198.18.0.0/15 is ever used (RFC 2544 benchmarking space), so nothing can clash with real networks.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging

from sandbox import system
from sandbox.config import SANDBOX_NETWORK, SandboxConfig
from sandbox.system import SandboxError
from sandbox.zstack_sim.hooks import NicPlan

log = logging.getLogger(__name__)

ALLOWED = SANDBOX_NETWORK
SEGMENT_BRIDGE = "br0"
# On the host, every 198.18.0.0/15 address that is not on a sandbox bridge is unreachable: without this, a
# connection to VM2's address would follow the host's default route off the machine instead of failing here.
GUARD_ROUTE = ("unreachable", str(ALLOWED), "metric", "4242")
# And whatever the host forwards (ip_forward=1 on a Docker host, say), a packet from a sandbox address to one
# outside the block is refused rather than forwarded: a student with root on VM1 can send anywhere by its default
# route, and the guard route only covers destinations inside the block. The host's own packets (iif lo) and
# packets between sandbox addresses keep the main table.
GUARD_RULES = (
    ("from", str(ALLOWED), "iif", "lo", "lookup", "main", "priority", "4240"),
    ("from", str(ALLOWED), "to", str(ALLOWED), "lookup", "main", "priority", "4241"),
    ("from", str(ALLOWED), "unreachable", "priority", "4242"),
)


def nic_network(nic: NicPlan) -> ipaddress.IPv4Interface:
    """The NIC's address with its prefix, refusing anything outside 198.18.0.0/15."""
    try:
        interface = ipaddress.IPv4Interface(f"{nic.ip}/{nic.netmask}")
    except ValueError:
        raise SandboxError(f"NIC address {nic.ip}/{nic.netmask} is not a valid IPv4 address and mask") from None
    if interface.ip not in ALLOWED or not interface.network.subnet_of(ALLOWED):
        raise SandboxError(f"NIC address {interface} is outside 198.18.0.0/15, which the sandbox is limited to")
    return interface


def nic_mac(vm_uuid: str, index: int) -> str:
    """A locally administered unicast MAC address derived from the VM and NIC."""
    digest = hashlib.sha256(f"{vm_uuid}/{index}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


async def ensure_guard_route() -> None:
    """Install the host route and rules that keep sandbox traffic from ever leaving the machine."""
    existing = await system.ip("route", "show", str(ALLOWED), check=False)
    if "unreachable" not in existing.stdout:
        await system.ip("route", "add", *GUARD_ROUTE)
        log.info("sandbox guard route: %s", " ".join(GUARD_ROUTE))
    rules = (await system.ip("rule", "show", check=False)).stdout.splitlines()
    for rule in GUARD_RULES:
        if not any(line.startswith(f"{rule[-1]}:") for line in rules):
            await system.ip("rule", "add", *rule)
            log.info("sandbox guard rule: %s", " ".join(rule))


async def remove_guard_route() -> None:
    """Remove the guard route and rules (when no sandbox is left on the host)."""
    await system.ip("route", "del", *GUARD_ROUTE, check=False)
    for rule in GUARD_RULES:
        await system.ip("rule", "del", *rule, check=False)


async def ensure_public_bridge(config: SandboxConfig, gateway: str, netmask: str) -> str:
    """The host bridge for a public network (created with the gateway address if missing); returns its name."""
    gateway_if = ipaddress.IPv4Interface(f"{gateway}/{netmask}")
    if gateway_if.ip not in ALLOWED or not gateway_if.network.subnet_of(ALLOWED):
        raise SandboxError(f"public gateway {gateway_if} is outside 198.18.0.0/15")
    key = hashlib.sha256(str(gateway_if.network).encode()).hexdigest()
    bridge = config.host_bridge(key)
    await ensure_guard_route()
    if bridge not in await system.list_links():
        await system.ip("link", "add", bridge, "type", "bridge")
        await system.ip("addr", "add", str(gateway_if), "dev", bridge)
        await system.ip("link", "set", bridge, "up")
        log.info("sandbox public bridge %s %s", bridge, gateway_if)
    return bridge


async def ensure_private_segment(config: SandboxConfig, l3_uuid: str) -> str:
    """The namespace holding an isolated network's bridge (created if missing); returns the namespace name."""
    netns = config.segment_netns(l3_uuid)
    if netns not in await system.list_netns():
        await system.run("ip", "netns", "add", netns)
        await system.ip("link", "set", "lo", "up", netns=netns)
        await system.ip("link", "add", SEGMENT_BRIDGE, "type", "bridge", netns=netns)
        await system.ip("link", "set", SEGMENT_BRIDGE, "up", netns=netns)
        log.info("sandbox private segment %s", netns)
    return netns


async def remove_private_segment(config: SandboxConfig, l3_uuid: str) -> None:
    """Delete an isolated network's namespace, if it exists (its bridge goes with it)."""
    netns = config.segment_netns(l3_uuid)
    if netns in await system.list_netns():
        await system.run("ip", "netns", "del", netns, check=False)
        log.info("sandbox private segment %s removed", netns)


async def plug_nic(
    config: SandboxConfig,
    *,
    vm_uuid: str,
    vm_netns: str,
    index: int,
    nic: NicPlan,
    public_bridge: str | None,
    segment_netns: str | None,
) -> str:
    """Create NIC ``index`` of a VM as ``eth<index>`` in its namespace, wired to a bridge; returns the name."""
    interface = nic_network(nic)
    vm_side, bridge_side = config.veth_vm_side(vm_uuid, index), config.veth_bridge_side(vm_uuid, index)
    device = f"eth{index}"
    # A stable MAC per NIC, as a cloud keeps it across reboots: neighbours' ARP caches stay valid.
    mac = nic_mac(vm_uuid, index)
    await system.ip("link", "add", vm_side, "address", mac, "type", "veth", "peer", "name", bridge_side)
    await system.ip("link", "set", vm_side, "netns", vm_netns)
    await system.ip("link", "set", vm_side, "name", device, netns=vm_netns)
    if public_bridge is not None:
        await system.ip("link", "set", bridge_side, "master", public_bridge)
        await system.ip("link", "set", bridge_side, "up")
    elif segment_netns is not None:
        await system.ip("link", "set", bridge_side, "netns", segment_netns)
        await system.ip("link", "set", bridge_side, "master", SEGMENT_BRIDGE, netns=segment_netns)
        await system.ip("link", "set", bridge_side, "up", netns=segment_netns)
    else:
        raise SandboxError(f"NIC {index} of VM {vm_uuid} has no segment")
    await system.ip("addr", "add", str(interface), "dev", device, netns=vm_netns)
    await system.ip("link", "set", device, "up", netns=vm_netns)
    return device
