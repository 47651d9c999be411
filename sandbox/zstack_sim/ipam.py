"""IP ranges and address allocation, as ZStack's L3 IPAM does it (lowest free address first).

The simulator owns allocation: it picks each NIC's address from the L3 network's ranges and tells the hooks,
which make the address real on the sandbox's network namespaces.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from sandbox.zstack_sim.errors import ApiError, argerr
from sandbox.zstack_sim.store import SimState

log = logging.getLogger(__name__)


def ipv4(value: Any, field: str) -> ipaddress.IPv4Address:
    """An IPv4 address parameter, or SYS.1007."""
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise argerr(f"{field}[{value}] is not a valid IPv4 address") from None


def check_range(start: str, end: str, netmask: str, gateway: str | None) -> tuple[str, int]:
    """Validate an IP range like ZStack's L3 interceptor; returns its CIDR and prefix length."""
    first, last = ipv4(start, "startIp"), ipv4(end, "endIp")
    try:
        network = ipaddress.IPv4Network(f"{first}/{netmask}", strict=False)
    except ValueError:
        raise argerr(f"netmask[{netmask}] is not a valid netmask") from None
    if first > last:
        raise argerr(f"start ip[{start}] is behind end ip[{end}]")
    if last not in network:
        raise argerr(f"start ip[{start}] and end ip[{end}] are not in the same subnet with netmask[{netmask}]")
    if gateway is not None:
        gw = ipv4(gateway, "gateway")
        if gw not in network:
            raise argerr(f"the gateway[{gateway}] is not in the subnet {network}")
        if first <= gw <= last:
            raise argerr(f"gateway[{gateway}] can not be part of range[{start}, {end}]")
    return str(network), network.prefixlen


def overlapping(state: SimState, l3_uuid: str, start: str, end: str) -> dict[str, Any] | None:
    """An existing range of the L3 network that overlaps ``start``-``end``, if any."""
    first, last = ipv4(start, "startIp"), ipv4(end, "endIp")
    for other in state.where("ip_range", l3NetworkUuid=l3_uuid):
        if first <= ipv4(other["endIp"], "endIp") and ipv4(other["startIp"], "startIp") <= last:
            return other
    return None


def allocate(state: SimState, l3: dict[str, Any], wanted: str | None = None) -> tuple[str, dict[str, Any]]:
    """A free address on the L3 network (``wanted`` if given and free) and the range it is in."""
    used = {n["ip"] for n in state.where("nic", l3NetworkUuid=l3["uuid"]) if n.get("ip")}
    ranges = state.where("ip_range", l3NetworkUuid=l3["uuid"])
    if not ranges:
        raise ApiError("HOST_ALLOCATION.1001", f"l3Network[uuid:{l3['uuid']}, name:{l3['name']}] has no IP range")
    if wanted is not None:
        address = ipv4(wanted, "staticIp")
        for ip_range in ranges:
            if ipv4(ip_range["startIp"], "startIp") <= address <= ipv4(ip_range["endIp"], "endIp"):
                if str(address) in used:
                    raise argerr(f"IP[{wanted}] is in use on l3Network[uuid:{l3['uuid']}]")
                return str(address), ip_range
        raise argerr(f"IP[{wanted}] is not in any IP range of l3Network[uuid:{l3['uuid']}]")
    for ip_range in ranges:
        current, last = ipv4(ip_range["startIp"], "startIp"), ipv4(ip_range["endIp"], "endIp")
        while current <= last:
            if str(current) not in used:
                return str(current), ip_range
            current += 1
    raise ApiError("HOST_ALLOCATION.1001", f"no available IP left in l3Network[uuid:{l3['uuid']}, name:{l3['name']}]")
