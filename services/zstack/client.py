"""``ZStackClient``: the one client labbot uses per ZStack management node (the lab platform, each nested one).

    async with ZStackClient("http://10.0.0.5:8080/zstack/v1", "admin", SecretStr("password")) as zs:
        zone = await zs.infra.create_zone("zone-1", resource_uuid=ids.zone)
        vm = await zs.compute.create_vm_instance("lab1-vm1", image_uuid=..., l3_network_uuids=[...])
        hosts = await zs.query("QueryHost")

The client itself is the node: ``wire`` (HTTP, transport retries) under ``core`` (session, call, jobs) under
``queries`` (paging, counts, tags), plus the node's own calls below (readiness, version, password). The typed
methods are grouped by area, each a class of its own that the client holds (``services.zstack.resources``
is their shared base): ``infra`` (zones, clusters, hosts), ``storage`` (iSCSI, SharedBlock, primary and backup
storage, images), ``network`` (L2/L3, ranges, services) and ``compute`` (offerings, VMs, volumes, resource
configs). For the nested ZStack, pass an ``httpx.AsyncBaseTransport`` that goes through the SSH tunnel to VM2.
"""

from __future__ import annotations

import hashlib
import logging

import httpx
from pydantic import SecretStr

from services.zstack.compute import ComputeApi
from services.zstack.errors import ZStackError
from services.zstack.infra import InfraApi
from services.zstack.inventories import ManagementNodeInventory, TagInventory
from services.zstack.network import NetworkApi
from services.zstack.polling import PollPolicy, RetryPolicy
from services.zstack.queries import QueriesMixin
from services.zstack.query import eq, like
from services.zstack.routes import route
from services.zstack.storage import StorageApi
from services.zstack.wire import deadline_in, json_object

log = logging.getLogger(__name__)


class ZStackClient(QueriesMixin):
    """Typed, retrying, session-keeping client of one ZStack management node.

    ``ZStackClient(base_url, account, password, *, transport=None, timeout=30, poll_cap=5.0)``; also takes
    ``poll_policy`` and ``retry_policy`` (``services.zstack.polling``). Use it as an async context manager or
    call ``aclose()``; it logs in lazily on the first call that needs a session and logs out on close.
    """

    def __init__(
        self,
        base_url: str,
        account: str,
        password: SecretStr,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30,
        poll_cap: float = 5.0,
        poll_policy: PollPolicy | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__(base_url, account, password, transport=transport, timeout=timeout, poll_cap=poll_cap,
                         poll_policy=poll_policy, retry_policy=retry_policy)
        self.infra = InfraApi(self)
        self.storage = StorageApi(self)
        self.network = NetworkApi(self)
        self.compute = ComputeApi(self)

    # --- the management node itself ----------------------------------------------------------------

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
        return [ManagementNodeInventory.model_validate(n)
                for n in await self.query("QueryManagementNode", deadline=deadline)]

    async def change_password(self, password: SecretStr, *, deadline: float | None = None) -> None:
        """Set the logged-in account's password (UpdateAccount; ZStack stores the SHA-512 hex it is given and
        compares the login's hash with it, zstackio/zstack identity ``AccountBase.handle(APIUpdateAccountMsg)``).
        The current session stays valid; new logins need the new password."""
        if self.account_uuid is None:
            await self.login()
        digest = hashlib.sha512(password.get_secret_value().encode()).hexdigest()
        await self.call("UpdateAccount", {"uuid": self.account_uuid, "password": digest}, deadline=deadline,
                        secrets=(password, SecretStr(digest)))

    # --- tags ----------------------------------------------------------------------------------------

    async def query_user_tags(self, pattern: str, *, resource_type: str | None = None,
                              deadline: float | None = None) -> list[TagInventory]:
        """User tags whose text matches ``pattern`` (SQL LIKE), e.g. ``labbot::lab::%``."""
        conditions = [like("tag", pattern)] + ([eq("resourceType", resource_type)] if resource_type else [])
        return [TagInventory.model_validate(t) for t in await self.query("QueryUserTag", conditions, deadline=deadline)]
