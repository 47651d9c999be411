"""Typed client methods for L2/L3 networks, IP ranges and network services.

A flat nested network is: CreateL2NoVlanNetwork on the host's interface → AttachL2NetworkToCluster →
CreateL3Network → AddIpRange → AttachNetworkServiceToL3Network (the ``Flat`` provider's DHCP, so the nested
VM gets the address ZStack allocated).

A lab's private network on the lab platform is: CreateL2VxlanNetwork in the admin's VXLAN pool (ZStack
allocates the VNI and attaches it to the pool's clusters; zstackio/zstack
plugin/vxlan/.../VxlanNetworkFactory.java) → CreateL3Network → AddIpRange → the Flat DHCP and Userdata services;
destroyed with DeleteL3Network and DeleteL2Network.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.zstack.errors import ZStackNotFoundError
from services.zstack.inventories import (
    IpRangeInventory,
    L2NetworkInventory,
    L3NetworkInventory,
    NetworkServiceProviderInventory,
)
from services.zstack.query import eq
from services.zstack.resources import Resources

log = logging.getLogger(__name__)


class NetworkApi(Resources):
    """L2 and L3 networks, IP ranges and network services."""

    async def create_l2_no_vlan_network(self, name: str, zone_uuid: str, physical_interface: str, *,
                                        description: str | None = None, resource_uuid: str | None = None,
                                        user_tags: Sequence[str] | None = None,
                                        deadline: float | None = None) -> L2NetworkInventory:
        """Create a no-VLAN L2 network on ``physical_interface`` (idempotent on ``resource_uuid``)."""
        params = {"name": name, "zoneUuid": zone_uuid, "physicalInterface": physical_interface,
                  "description": description}
        return await self._create("CreateL2NoVlanNetwork", "QueryL2Network", L2NetworkInventory, params,
                                  resource_uuid=resource_uuid, user_tags=user_tags, deadline=deadline)

    async def create_l2_vxlan_network(self, name: str, pool_uuid: str, *, description: str | None = None,
                                      resource_uuid: str | None = None, user_tags: Sequence[str] | None = None,
                                      deadline: float | None = None) -> L2NetworkInventory:
        """Create a VXLAN L2 network in a pool; ZStack picks a free VNI (idempotent on ``resource_uuid``)."""
        params = {"name": name, "poolUuid": pool_uuid, "description": description}
        return await self._create("CreateL2VxlanNetwork", "QueryL2Network", L2NetworkInventory, params,
                                  resource_uuid=resource_uuid, user_tags=user_tags, deadline=deadline)

    async def find_l2_network_by_name(self, name: str, *, network_type: str | None = None,
                                      deadline: float | None = None) -> L2NetworkInventory | None:
        """The L2 network named ``name`` (of ``network_type``, e.g. ``VxlanNetworkPool``, when given), or None."""
        extra = [eq("type", network_type)] if network_type else []
        return await self._find_by_name("QueryL2Network", L2NetworkInventory, name, "l2 network", extra=extra,
                                        deadline=deadline)

    async def get_l2_network(self, uuid: str, *, deadline: float | None = None) -> L2NetworkInventory | None:
        """One L2 network by uuid, or None."""
        return await self._get("QueryL2Network", L2NetworkInventory, uuid, deadline=deadline)

    async def delete_l2_network(self, uuid: str, *, deadline: float | None = None) -> bool:
        """Delete an L2 network (ZStack deletes its L3 networks with it); False when it was already gone."""
        if await self.get_l2_network(uuid, deadline=deadline) is None:
            return False
        await self.api.call("DeleteL2Network", {"uuid": uuid}, deadline=deadline)
        return True

    async def delete_l3_network(self, uuid: str, *, deadline: float | None = None) -> bool:
        """Delete an L3 network and its IP ranges; False when it was already gone."""
        if await self.get_l3_network(uuid, deadline=deadline) is None:
            return False
        await self.api.call("DeleteL3Network", {"uuid": uuid}, deadline=deadline)
        return True

    async def find_l3_networks_by_user_tag(self, pattern: str, *,
                                           deadline: float | None = None) -> list[L3NetworkInventory]:
        """L3 networks carrying a user tag that matches ``pattern`` (SQL LIKE)."""
        return [L3NetworkInventory.model_validate(n)
                for n in await self.api.find_by_user_tag("QueryL3Network", pattern, deadline=deadline)]

    async def find_l2_networks_by_user_tag(self, pattern: str, *,
                                           deadline: float | None = None) -> list[L2NetworkInventory]:
        """L2 networks carrying a user tag that matches ``pattern`` (SQL LIKE)."""
        return [L2NetworkInventory.model_validate(n)
                for n in await self.api.find_by_user_tag("QueryL2Network", pattern, deadline=deadline)]

    async def attach_l2_network_to_cluster(self, l2_network_uuid: str, cluster_uuid: str, *,
                                           deadline: float | None = None) -> L2NetworkInventory:
        """Attach an L2 network to a cluster (no-op when already attached)."""
        network = await self._require("QueryL2Network", L2NetworkInventory, l2_network_uuid, "l2 network",
                                      deadline=deadline)
        if cluster_uuid in network.attached_cluster_uuids:
            return network
        result = await self.api.call("AttachL2NetworkToCluster", {"l2NetworkUuid": l2_network_uuid,
                                                              "clusterUuid": cluster_uuid}, deadline=deadline)
        return L2NetworkInventory.model_validate(result["inventory"])

    async def create_l3_network(self, name: str, l2_network_uuid: str, *, category: str = "Private",
                                system: bool = False, dns_domain: str | None = None, description: str | None = None,
                                resource_uuid: str | None = None, user_tags: Sequence[str] | None = None,
                                deadline: float | None = None) -> L3NetworkInventory:
        """Create an L3 network on an L2 network (idempotent on ``resource_uuid``)."""
        params = {"name": name, "l2NetworkUuid": l2_network_uuid, "category": category, "system": system,
                  "dnsDomain": dns_domain, "description": description}
        return await self._create("CreateL3Network", "QueryL3Network", L3NetworkInventory, params,
                                  resource_uuid=resource_uuid, user_tags=user_tags, deadline=deadline)

    async def get_l3_network(self, uuid: str, *, deadline: float | None = None) -> L3NetworkInventory | None:
        """One L3 network by uuid (with its IP ranges), or None."""
        return await self._get("QueryL3Network", L3NetworkInventory, uuid, deadline=deadline)

    async def find_l3_network_by_name(self, name: str, *, deadline: float | None = None) -> L3NetworkInventory | None:
        """The L3 network named ``name`` (an Enabled one wins over others), or None."""
        return await self._find_by_name("QueryL3Network", L3NetworkInventory, name, "l3 network",
                                        usable=lambda net: net.state in (None, "Enabled"), deadline=deadline)

    async def add_ip_range(self, l3_network_uuid: str, name: str, start_ip: str, end_ip: str, netmask: str,
                           gateway: str, *, resource_uuid: str | None = None, user_tags: Sequence[str] | None = None,
                           deadline: float | None = None) -> IpRangeInventory:
        """Add an IP range to an L3 network (idempotent on ``resource_uuid``)."""
        params = {"l3NetworkUuid": l3_network_uuid, "name": name, "startIp": start_ip, "endIp": end_ip,
                  "netmask": netmask, "gateway": gateway}
        return await self._create("AddIpRange", "QueryIpRange", IpRangeInventory, params,
                                  resource_uuid=resource_uuid, user_tags=user_tags, deadline=deadline)

    async def find_network_service_provider(self, provider_type: str = "Flat", *,
                                            deadline: float | None = None) -> NetworkServiceProviderInventory:
        """The network service provider of a type (``Flat``, ``SecurityGroup``, ``VirtualRouter``)."""
        found = await self._list("QueryNetworkServiceProvider", NetworkServiceProviderInventory,
                                 [eq("type", provider_type)], deadline=deadline)
        if not found:
            raise ZStackNotFoundError("SYS.1003", "A resource can not be found",
                                      f"no network service provider of type {provider_type}",
                                      action="QueryNetworkServiceProvider")
        return found[0]

    async def attach_network_service_to_l3(self, l3_network_uuid: str, provider_uuid: str,
                                           service_types: Sequence[str], *,
                                           deadline: float | None = None) -> L3NetworkInventory:
        """Enable services (``DHCP``, ``Userdata`` ...) of one provider on an L3 network; those already on are
        skipped, and nothing is called when all are."""
        network = await self._require("QueryL3Network", L3NetworkInventory, l3_network_uuid, "l3 network",
                                      deadline=deadline)
        enabled = {(s.get("networkServiceProviderUuid"), s.get("networkServiceType")) for s in network.network_services}
        missing = [t for t in service_types if (provider_uuid, t) not in enabled]
        if not missing:
            return network
        result = await self.api.call("AttachNetworkServiceToL3Network",
                                 {"l3NetworkUuid": l3_network_uuid, "networkServices": {provider_uuid: missing}},
                                 deadline=deadline)
        return L3NetworkInventory.model_validate(result["inventory"])

    async def attach_flat_network_services(self, l3_network_uuid: str, service_types: Sequence[str] = ("DHCP",), *,
                                           deadline: float | None = None) -> L3NetworkInventory:
        """Enable the ``Flat`` provider's services on an L3 network (what a flat nested network needs)."""
        provider = await self.find_network_service_provider("Flat", deadline=deadline)
        return await self.attach_network_service_to_l3(l3_network_uuid, provider.uuid, service_types,
                                                       deadline=deadline)
