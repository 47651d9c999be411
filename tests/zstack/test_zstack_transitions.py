"""Transitional states while jobs run, resuming an in-flight create, and the client's transport seam."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sandbox.zstack_sim.server import serve_simulator
from services.zstack import RetryPolicy, ZStackClient, ZStackTimeoutError, deadline_in, eq, new_uuid
from tests.zstack.conftest import FAST_POLL, ClientFactory

GiB = 1024**3


async def _state_while(client: ZStackClient, action: str, field: str, job: asyncio.Task[Any]) -> str:
    """The ``field`` of the one resource a Query API lists, read while ``job`` is still running."""
    for _ in range(200):
        found = await client.query(action)
        if found:
            assert not job.done()
            return str(found[0][field])
        await asyncio.sleep(0.005)
    raise AssertionError(f"nothing appeared in {action}")


async def test_resources_show_their_transitional_states(make_client: ClientFactory) -> None:
    durations = {"AddKVMHost": 0.15, "AddImage": 0.15, "AddImageStoreBackupStorage": 0.15, "CreateZone": 0.0,
                 "CreateCluster": 0.0}
    async with serve_simulator("nested", latency_scale=1.0, durations=durations) as sim:
        zs, watcher = make_client(sim.url), make_client(sim.url)
        zone = await zs.infra.create_zone("z")
        cluster = await zs.infra.create_cluster("c", zone.uuid)
        adding = asyncio.create_task(zs.infra.add_kvm_host("h", "198.19.0.11", cluster.uuid, username="root",
                                                     password=SecretStr("pw")))
        assert await _state_while(watcher, "QueryHost", "status", adding) == "Connecting"
        assert (await adding).status == "Connected"
        storing = asyncio.create_task(zs.storage.add_image_store_backup_storage("bs", "198.19.0.11", username="root",
                                                                        password=SecretStr("pw"), url="/bs"))
        assert await _state_while(watcher, "QueryBackupStorage", "status", storing) == "Connecting"
        backup = await storing
        downloading = asyncio.create_task(zs.storage.add_image("img", "http://198.19.0.10/i.qcow2", [backup.uuid]))
        assert await _state_while(watcher, "QueryImage", "status", downloading) == "Downloading"
        image = await downloading
        assert image.status == "Ready" and image.size


async def test_resumed_create_waits_for_the_vm_an_earlier_attempt_is_starting(make_client: ClientFactory) -> None:
    async with serve_simulator("outer", latency_scale=1.0, durations={"CreateVmInstance": 0.25}) as sim:
        first, restarted = make_client(sim.url), make_client(sim.url)
        image = await first.storage.find_image_by_name("sandbox-jump")
        vpc = await first.network.find_l3_network_by_name("sandbox-vpc")
        assert image and vpc
        uuid = new_uuid()
        kwargs = {"image_uuid": image.uuid, "cpu_num": 1, "memory_size": GiB, "l3_network_uuids": [vpc.uuid],
                  "resource_uuid": uuid}
        original = asyncio.create_task(first.compute.create_vm_instance("vm", **kwargs))  # type: ignore[arg-type]
        assert await _state_while(restarted, "QueryVmInstance", "state", original) == "Starting"
        resumed = await restarted.compute.create_vm_instance("vm", **kwargs)  # type: ignore[arg-type]
        assert resumed.uuid == uuid and resumed.state == "Running"
        assert (await original).state == "Running"
        assert sim.state.executed("CreateVmInstance") == 1 and sim.state.count("vm") == 1


class CountingTransport(httpx.AsyncBaseTransport):
    """A transport that forwards to the real one and counts: the seam an SSH tunnel plugs into."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_injected_transport_carries_every_request() -> None:
    transport = CountingTransport()
    async with serve_simulator("nested") as sim:
        zs = ZStackClient(sim.url, "admin", SecretStr("password"), transport=transport, poll_policy=FAST_POLL)
        async with zs:
            zone = await zs.infra.create_zone("via-transport")
            assert await zs.query("QueryZone", [eq("uuid", zone.uuid)])
    assert transport.paths[0] == "/zstack/v1/accounts/login"
    assert any(p.startswith("/zstack/v1/api-jobs/") for p in transport.paths)
    assert transport.paths[-1].startswith("/zstack/v1/accounts/sessions/")  # the logout on close


async def test_retries_stop_at_the_deadline_as_a_timeout(make_client: ClientFactory) -> None:
    async with serve_simulator("nested") as sim:
        client = make_client(sim.url, retry_policy=RetryPolicy(attempts=1000, initial=0.02, factor=1.0))
        await client.login()
        sim.faults.set(drop_rate=1.0, methods=frozenset({"GET"}))
        with pytest.raises(ZStackTimeoutError) as caught:
            await client.query("QueryZone", deadline=deadline_in(0.2))
        assert caught.value.code == "sdk.1001" and client.stats.transport_retries >= 3
        sim.faults.clear()
        await client.aclose()  # while the simulator is still up, so the logout is answered
