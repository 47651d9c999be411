"""Typed client methods for zones, clusters and KVM hosts (``ZStackClient.infra``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import SecretStr

from services.zstack.inventories import (
    ClusterInventory,
    HostInventory,
    ZoneInventory,
)
from services.zstack.resources import Resources

log = logging.getLogger(__name__)


class InfraApi(Resources):
    """Zones, clusters and KVM hosts."""

    async def create_zone(self, name: str, *, description: str | None = None, resource_uuid: str | None = None,
                          user_tags: Sequence[str] | None = None, deadline: float | None = None) -> ZoneInventory:
        """Create a zone (idempotent on ``resource_uuid``)."""
        return await self._create("CreateZone", "QueryZone", ZoneInventory,
                                  {"name": name, "description": description}, resource_uuid=resource_uuid,
                                  user_tags=user_tags, deadline=deadline)

    async def create_cluster(self, name: str, zone_uuid: str, *, hypervisor_type: str = "KVM",
                             architecture: str | None = None, description: str | None = None,
                             resource_uuid: str | None = None, user_tags: Sequence[str] | None = None,
                             deadline: float | None = None) -> ClusterInventory:
        """Create a cluster in a zone (idempotent on ``resource_uuid``)."""
        params = {"name": name, "zoneUuid": zone_uuid, "hypervisorType": hypervisor_type,
                  "architecture": architecture, "description": description}
        return await self._create("CreateCluster", "QueryCluster", ClusterInventory, params,
                                  resource_uuid=resource_uuid, user_tags=user_tags, deadline=deadline)

    # --- hosts ---------------------------------------------------------------------------------------

    async def add_kvm_host(self, name: str, management_ip: str, cluster_uuid: str, *, username: str,
                           password: SecretStr, ssh_port: int = 22, description: str | None = None,
                           resource_uuid: str | None = None, user_tags: Sequence[str] | None = None,
                           deadline: float | None = None) -> HostInventory:
        """Add a KVM host over SSH; returns once it is Connected (idempotent on ``resource_uuid``)."""
        params = {"name": name, "managementIp": management_ip, "clusterUuid": cluster_uuid, "username": username,
                  "password": password.get_secret_value(), "sshPort": ssh_port, "description": description}
        return await self._create("AddKVMHost", "QueryHost", HostInventory, params, resource_uuid=resource_uuid,
                                  user_tags=user_tags, deadline=deadline, secrets=(password,))

    async def get_host(self, uuid: str, *, deadline: float | None = None) -> HostInventory | None:
        """One host by uuid, or None."""
        return await self._get("QueryHost", HostInventory, uuid, deadline=deadline)
