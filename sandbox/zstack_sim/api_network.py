"""Handlers: L2 and L3 networks, IP ranges and network services."""

from __future__ import annotations

import logging
from typing import Any

from sandbox.zstack_sim.context import Ctx, api, ensure_mapping
from sandbox.zstack_sim.errors import argerr
from sandbox.zstack_sim.ipam import check_range, overlapping
from sandbox.zstack_sim.views import render

log = logging.getLogger(__name__)


@api("CreateL2NoVlanNetwork")
async def create_l2_no_vlan_network(ctx: Ctx) -> dict[str, Any]:
    """An L2 network on a host interface, without VLAN."""
    zone = ctx.ref("zoneUuid", "zone")
    assert zone is not None
    name = ctx.text("name", max_len=255) or ctx.required("name")
    interface = ctx.text("physicalInterface", max_len=1024) or ctx.required("physicalInterface")
    record = {"uuid": ctx.resource_uuid(), "name": name, "description": ctx.text("description", max_len=2048),
              "zoneUuid": zone["uuid"], "physicalInterface": interface, "type": "L2NoVlanNetwork",
              "vSwitchType": ctx.choice("vSwitchType", ("LinuxBridge", "OvsDpdk", "MacVlan"), "LinuxBridge"),
              "virtualNetworkId": 0, "isolated": ctx.flag("isolated"), "attachedClusterUuids": []}
    await ctx.work()
    return {"inventory": render(ctx.state, "l2", ctx.create("l2", record))}


@api("AttachL2NetworkToCluster")
async def attach_l2_network_to_cluster(ctx: Ctx) -> dict[str, Any]:
    """Make the cluster's hosts bridge the L2 network's interface."""
    network, cluster = ctx.ref("l2NetworkUuid", "l2"), ctx.ref("clusterUuid", "cluster")
    assert network is not None and cluster is not None
    if network["zoneUuid"] != cluster["zoneUuid"]:
        raise argerr(f"l2Network[uuid:{network['uuid']}] and cluster[uuid:{cluster['uuid']}] are not in the same zone")
    if cluster["uuid"] in network["attachedClusterUuids"]:
        raise argerr(f"l2Network[uuid:{network['uuid']}] has attached to cluster[uuid:{cluster['uuid']}], can't "
                     "attach again")
    for other in ctx.state.where("l2", type="L2NoVlanNetwork", physicalInterface=network["physicalInterface"]):
        if network["type"] == "L2NoVlanNetwork" and cluster["uuid"] in other["attachedClusterUuids"]:
            raise argerr(f"There has been a l2Network[uuid:{other['uuid']}, name:{other['name']}] attached to "
                         f"cluster[uuid:{cluster['uuid']}] that has physical interface[{network['physicalInterface']}]"
                         ". You cannot attach another one with the same physical interface")
    await ctx.work()
    ctx.state.touch(network, attachedClusterUuids=[*network["attachedClusterUuids"], cluster["uuid"]])
    return {"inventory": render(ctx.state, "l2", network)}


@api("CreateL3Network")
async def create_l3_network(ctx: Ctx) -> dict[str, Any]:
    """An L3 network on an L2 network (no IP range yet)."""
    l2 = ctx.ref("l2NetworkUuid", "l2")
    assert l2 is not None
    name = ctx.text("name", max_len=255) or ctx.required("name")
    record = {"uuid": ctx.resource_uuid(), "name": name, "description": ctx.text("description", max_len=2048),
              "type": ctx.text("type") or "L3BasicNetwork", "zoneUuid": l2["zoneUuid"], "l2NetworkUuid": l2["uuid"],
              "state": "Enabled", "dnsDomain": ctx.text("dnsDomain"), "system": ctx.flag("system"),
              "category": ctx.choice("category", ("Public", "Private", "System"), "Private"),
              "ipVersion": int(ctx.choice("ipVersion", ("4", "6"), "4") or 4),
              "enableIPAM": ctx.flag("enableIPAM", True),
              "dns": [], "networkServices": []}
    await ctx.work()
    return {"inventory": render(ctx.state, "l3", ctx.create("l3", record))}


@api("AddIpRange")
async def add_ip_range(ctx: Ctx) -> dict[str, Any]:
    """An IPv4 range of an L3 network; it must not overlap the network's other ranges."""
    l3 = ctx.ref("l3NetworkUuid", "l3")
    assert l3 is not None
    name = ctx.text("name", max_len=255) or ctx.required("name")
    start, end, netmask = str(ctx.required("startIp")), str(ctx.required("endIp")), str(ctx.required("netmask"))
    gateway = ctx.text("gateway")
    cidr, prefix = check_range(start, end, netmask, gateway)
    other = overlapping(ctx.state, l3["uuid"], start, end)
    if other is not None:
        raise argerr(f"new ip range[startIp:{start}, endIp:{end}] overlaps with ip range[uuid:{other['uuid']}, "
                     f"startIp:{other['startIp']}, endIp:{other['endIp']}]")
    record = {"uuid": ctx.resource_uuid(), "name": name, "description": ctx.text("description", max_len=2048),
              "l3NetworkUuid": l3["uuid"], "startIp": start, "endIp": end, "netmask": netmask, "gateway": gateway,
              "networkCidr": cidr, "ipVersion": 4, "prefixLen": prefix,
              "ipRangeType": ctx.choice("ipRangeType", ("Normal", "AddressPool"), "Normal")}
    await ctx.work()
    return {"inventory": render(ctx.state, "ip_range", ctx.create("ip_range", record))}


@api("AttachNetworkServiceToL3Network")
async def attach_network_service_to_l3_network(ctx: Ctx) -> dict[str, Any]:
    """Enable services of providers on an L3 network (``networkServices``: provider uuid -> service types)."""
    l3 = ctx.ref("l3NetworkUuid", "l3")
    assert l3 is not None
    wanted = ensure_mapping(ctx.required("networkServices"), "networkServices")
    services = list(l3["networkServices"])
    for provider_uuid, types in wanted.items():
        provider = ctx.state.require("provider", provider_uuid, "networkServices")
        if not isinstance(types, list) or not types:
            raise argerr("networkServices must map a provider uuid to a list of service types")
        for service_type in types:
            if service_type not in provider["networkServiceTypes"]:
                raise argerr(f"network service provider[uuid:{provider_uuid}] doesn't support network service "
                             f"type[{service_type}]")
            if any(s["networkServiceType"] == service_type for s in services):
                raise argerr(f"network service[{service_type}] has been attached to l3Network[uuid:{l3['uuid']}]")
            services.append({"l3NetworkUuid": l3["uuid"], "networkServiceProviderUuid": provider_uuid,
                             "networkServiceType": service_type})
    await ctx.work()
    ctx.state.touch(l3, networkServices=services)
    return {"inventory": render(ctx.state, "l3", l3)}
