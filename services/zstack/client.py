"""``ZStackClient``: the one client labbot uses per ZStack management node (the lab platform, each nested one).

    async with ZStackClient("http://10.0.0.5:8080/zstack/v1", "admin", SecretStr("password")) as zs:
        zone = await zs.create_zone("zone-1", resource_uuid=ids.zone)
        vm = await zs.create_vm_instance("lab1-vm1", image_uuid=..., l3_network_uuids=[...])

The layers, each a module: ``wire`` (HTTP, transport retries) under ``core`` (session, call, jobs) →
``queries`` (paging, counts) → ``resources`` (idempotent create, find by name) → ``infra`` → ``storage`` →
``network`` → ``compute``. For the nested ZStack, pass an
``httpx.AsyncBaseTransport`` that goes through the SSH tunnel to VM2.
"""

from __future__ import annotations

import logging

from services.zstack.compute import ComputeApi

log = logging.getLogger(__name__)


class ZStackClient(ComputeApi):
    """Typed, retrying, session-keeping client of one ZStack management node.

    ``ZStackClient(base_url, account, password, *, transport=None, timeout=30, poll_cap=5.0)``; also takes
    ``poll_policy`` and ``retry_policy`` (``services.zstack.polling``). Use it as an async context manager or
    call ``aclose()``; it logs in lazily on the first call that needs a session and logs out on close.
    """
