"""Handlers: L2 and L3 networks, IP ranges and network services."""

from __future__ import annotations

import logging
from typing import Any

from sandbox.zstack_sim.context import Ctx, api, ensure_mapping
from sandbox.zstack_sim.errors import ApiError, argerr, operr
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


VXLAN_POOL_TYPE = "VxlanNetworkPool"  # VxlanNetworkPoolConstant.VXLAN_NETWORK_POOL_TYPE
VXLAN_TYPE = "VxlanNetwork"  # VxlanNetworkConstant.VXLAN_NETWORK_TYPE


@api("CreateL2VxlanNetwork")
async def create_l2_vxlan_network(ctx: Ctx) -> dict[str, Any]:
    """A VXLAN L2 network in a pool: the VNI is the one asked for or the lowest free one of the pool's ranges,
    and the network is attached to every cluster the pool is (zstackio/zstack plugin/vxlan
    ``VxlanNetworkFactory.createL2Network``, ``VxlanNetworkPool`` AllocateVniMsg)."""
    pool = ctx.ref("poolUuid", "l2")
    assert pool is not None
    if pool["type"] != VXLAN_POOL_TYPE:
        raise argerr(f"l2Network[uuid:{pool['uuid']}] is not a vxlan network pool")
    name = ctx.text("name", max_len=255) or ctx.required("name")
    used = {n["vni"] for n in ctx.state.where("l2", type=VXLAN_TYPE, poolUuid=pool["uuid"])}
    wanted = ctx.param("vni")
    ranges = pool.get("vniRanges") or []
    if wanted is not None:
        if not isinstance(wanted, int) or not any(lo <= wanted <= hi for lo, hi in ranges):
            raise argerr(f"vni[{wanted}] is not in any vni range of vxlan pool[uuid:{pool['uuid']}]")
        if wanted in used:
            raise argerr(f"vni[{wanted}] is already used in vxlan pool[uuid:{pool['uuid']}]")
        vni = wanted
    else:
        vni = next((v for lo, hi in ranges for v in range(lo, hi + 1) if v not in used), None)
        if vni is None:
            raise ApiError("SYS.1006", f"no vni is available in the vxlan network pool[name:{pool['name']}, "
                                       f"uuid:{pool['uuid']}]")
    record = {"uuid": ctx.resource_uuid(), "name": name, "description": ctx.text("description", max_len=2048),
              "zoneUuid": pool["zoneUuid"], "physicalInterface": "", "type": VXLAN_TYPE,
              "vSwitchType": ctx.choice("vSwitchType", ("LinuxBridge", "OvsDpdk", "MacVlan", "OvnDpdk"),
                                        "LinuxBridge"),
              "virtualNetworkId": vni, "vni": vni, "poolUuid": pool["uuid"], "isolated": ctx.flag("isolated"),
              "attachedClusterUuids": list(pool["attachedClusterUuids"])}
    await ctx.work()
    return {"inventory": render(ctx.state, "l2", ctx.create("l2", record))}


@api("DeleteL3Network")
async def delete_l3_network(ctx: Ctx) -> dict[str, Any]:
    """Delete an L3 network with its IP ranges; the NICs still on it are deleted with it (the cascade)."""
    l3 = ctx.ref("uuid", "l3")
    assert l3 is not None
    ctx.choice("deleteMode", ("Permissive", "Enforcing"), "Permissive")
    await ctx.work()
    await _drop_l3(ctx, l3)
    return {}


@api("DeleteL2Network")
async def delete_l2_network(ctx: Ctx) -> dict[str, Any]:
    """Delete an L2 network and, by cascade, every L3 network on it (a pool: its VXLAN networks too)."""
    l2 = ctx.ref("uuid", "l2")
    assert l2 is not None
    ctx.choice("deleteMode", ("Permissive", "Enforcing"), "Permissive")
    await ctx.work()
    doomed = [l2, *ctx.state.where("l2", poolUuid=l2["uuid"])] if l2["type"] == VXLAN_POOL_TYPE else [l2]
    for network in doomed:
        for l3 in ctx.state.where("l3", l2NetworkUuid=network["uuid"]):
            await _drop_l3(ctx, l3)
        ctx.state.remove("l2", network["uuid"])
    return {}


async def _drop_l3(ctx: Ctx, l3: dict[str, Any]) -> None:
    for nic in ctx.state.where("nic", l3NetworkUuid=l3["uuid"]):
        ctx.state.remove("nic", nic["uuid"])
    for ip_range in ctx.state.where("ip_range", l3NetworkUuid=l3["uuid"]):
        ctx.state.remove("ip_range", ip_range["uuid"])
    ctx.state.remove("l3", l3["uuid"])
    await ctx.outer_hooks.l3_network_deleted(l3["uuid"])


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
    interface = network["physicalInterface"]
    if network["type"] in ("L2NoVlanNetwork", "L2VlanNetwork") and not await ctx.nested_hooks.has_interface(interface):
        # The KVM agent checks the interface on every host of the cluster (KVMHost.handle(
        # CheckNetworkPhysicalInterfaceMsg)); the bridge could not be made on a host without it.
        for host in ctx.state.where("host", clusterUuid=cluster["uuid"]):
            raise operr(f"cannot find the physical interface [{interface}], failed to check physical network "
                        f"interfaces[names : {interface}] on kvm host[uuid:{host['uuid']}, ip:{host['managementIp']}]")
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
