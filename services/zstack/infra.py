"""Typed client methods for the management node, zones, clusters, hosts, capacity and tags."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from pydantic import SecretStr

from services.zstack.errors import ZStackError
from services.zstack.inventories import (
    ClusterInventory,
    CpuMemoryCapacity,
    HostInventory,
    ManagementNodeInventory,
    TagInventory,
    ZoneInventory,
)
from services.zstack.polling import RetryPolicy
from services.zstack.query import eq, like
from services.zstack.resources import ResourcesMixin
from services.zstack.routes import route
from services.zstack.wire import deadline_in, json_object

log = logging.getLogger(__name__)


class InfraApi(ResourcesMixin):
    """Health, zones, clusters, KVM hosts, CPU/memory capacity and user tags."""

    # --- health --------------------------------------------------------------------------------------

    async def is_ready(self, *, within: float = 5.0) -> bool:
        """Whether the management node answers ``IsReadyToGo`` with 200 within ``within`` seconds (no session,
        one attempt: a health probe should report, not retry)."""
        try:
            response, _ = await self._wire.send("GET", route("IsReadyToGo").path, action="IsReadyToGo", headers={},
                                                json_body=None, params=[], deadline=deadline_in(within),
                                                retry=RetryPolicy(attempts=1))
        except ZStackError as err:
            log.debug("ZStack %s is not ready: %s", self.base_url, err)
            return False
        if response.status_code != 200:
            log.debug("ZStack %s is not ready: HTTP %s %s", self.base_url, response.status_code,
                      json_object(response, strict=False).get("error"))
        return response.status_code == 200

    async def get_version(self, *, deadline: float | None = None) -> str:
        """The management node's version (``GetVersion``), e.g. ``5.2.1``."""
        result = await self.call("GetVersion", {}, deadline=deadline)
        version = result.get("version")
        if not isinstance(version, str) or not version:
            raise ZStackError("sdk.1002", "GetVersion answered without a version", action="GetVersion")
        return version

    async def list_management_nodes(self, *, deadline: float | None = None) -> list[ManagementNodeInventory]:
        """Every management node (``QueryManagementNode``)."""
        return await self._list("QueryManagementNode", ManagementNodeInventory, deadline=deadline)

    # --- zones and clusters --------------------------------------------------------------------------

    async def change_password(self, password: SecretStr, *, deadline: float | None = None) -> None:
        """Set the logged-in account's password (UpdateAccount; ZStack stores the SHA-512 hex it is given and
        compares the login's hash with it, zstackio/zstack identity ``AccountBase.handle(APIUpdateAccountMsg)``).
        The current session stays valid; new logins need the new password."""
        if self.account_uuid is None:
            await self.login()
        digest = hashlib.sha512(password.get_secret_value().encode()).hexdigest()
        await self.call("UpdateAccount", {"uuid": self.account_uuid, "password": digest}, deadline=deadline,
                        secrets=(password, SecretStr(digest)))

    async def create_zone(self, name: str, *, description: str | None = None, resource_uuid: str | None = None,
                          user_tags: Sequence[str] | None = None, deadline: float | None = None) -> ZoneInventory:
        """Create a zone (idempotent on ``resource_uuid``)."""
        return await self._create("CreateZone", "QueryZone", ZoneInventory,
                                  {"name": name, "description": description}, resource_uuid=resource_uuid,
                                  user_tags=user_tags, deadline=deadline)

    async def get_zone(self, uuid: str, *, deadline: float | None = None) -> ZoneInventory | None:
        """One zone by uuid, or None."""
        return await self._get("QueryZone", ZoneInventory, uuid, deadline=deadline)

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

    async def get_cpu_memory_capacity(self, *, zone_uuids: Sequence[str] = (), cluster_uuids: Sequence[str] = (),
                                      host_uuids: Sequence[str] = (), deadline: float | None = None
                                      ) -> CpuMemoryCapacity:
        """CPU and memory capacity of the given scope, or of everything when no scope is given."""
        params = {"zoneUuids": list(zone_uuids), "clusterUuids": list(cluster_uuids), "hostUuids": list(host_uuids),
                  "all": not (zone_uuids or cluster_uuids or host_uuids)}
        return CpuMemoryCapacity.model_validate(await self.call("GetCpuMemoryCapacity", params, deadline=deadline))

    # --- tags ----------------------------------------------------------------------------------------

    async def query_user_tags(self, pattern: str, *, resource_type: str | None = None,
                              deadline: float | None = None) -> list[TagInventory]:
        """User tags whose text matches ``pattern`` (SQL LIKE), e.g. ``labbot::lab::%``."""
        conditions = [like("tag", pattern)] + ([eq("resourceType", resource_type)] if resource_type else [])
        return await self._list("QueryUserTag", TagInventory, conditions, deadline=deadline)
