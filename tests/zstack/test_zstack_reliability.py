"""Retries under injected faults: lost answers, refused requests, API errors, slow polls, no server at all.

The property that matters: whatever goes wrong on the wire, a create runs at most once per resource uuid, and
the caller either gets the resource or a typed error it can retry with the same uuid.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from pydantic import SecretStr

from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from services.zstack import (
    RetryPolicy,
    ZStackClient,
    ZStackError,
    ZStackOperationError,
    ZStackTimeoutError,
    ZStackUnreachableError,
    deadline_in,
    new_uuid,
)
from services.zstack.query import eq
from tests.zstack.conftest import FAST_POLL, ClientFactory

GiB = 1024**3


async def _lab_vm(client: ZStackClient, name: str, resource_uuid: str) -> str:
    image = await client.storage.find_image_by_name("sandbox-jump")
    offering = await client.compute.find_instance_offering_by_name("sandbox-small")
    vpc = await client.network.find_l3_network_by_name("sandbox-vpc")
    assert image and offering and vpc
    vm = await client.compute.create_vm_instance(name, image_uuid=image.uuid, instance_offering_uuid=offering.uuid,
                                         l3_network_uuids=[vpc.uuid], resource_uuid=resource_uuid)
    assert vm.state == "Running" and vm.uuid == resource_uuid
    return vm.uuid


async def test_lost_answer_to_a_create_is_recovered_from_the_job(outer_sim: RunningSimulator,
                                                                 outer: ZStackClient) -> None:
    await outer.login()
    outer_sim.faults.set(drop_rate=1.0, drop_phase="after", methods=frozenset({"POST"}), budget=1)
    await _lab_vm(outer, "lab1-vm1", new_uuid())
    assert outer.stats.transport_retries == 1 and outer.stats.duplicate_job_recoveries == 1
    assert outer_sim.state.executed("CreateVmInstance") == 1
    assert outer_sim.state.count("vm") == 1 and outer_sim.state.count("nic") == 1


async def test_request_refused_before_handling_is_simply_sent_again(outer_sim: RunningSimulator,
                                                                    outer: ZStackClient) -> None:
    await outer.login()
    outer_sim.faults.set(drop_rate=1.0, drop_phase="before", methods=frozenset({"POST"}), budget=1)
    await _lab_vm(outer, "lab1-vm1", new_uuid())
    assert outer.stats.transport_retries == 1 and outer.stats.duplicate_job_recoveries == 0
    assert outer_sim.state.executed("CreateVmInstance") == 1 and outer_sim.state.count("vm") == 1


async def test_lost_poll_answers_and_lost_query_answers_are_retried(outer_sim: RunningSimulator,
                                                                    outer: ZStackClient) -> None:
    await outer.login()
    outer_sim.faults.set(drop_rate=0.5, methods=frozenset({"GET"}))
    uuids = [await _lab_vm(outer, f"vm{i}", new_uuid()) for i in range(3)]
    assert outer.stats.transport_retries > 0
    assert sorted(v["uuid"] for v in outer_sim.state.list("vm")) == sorted(uuids)


async def test_api_error_is_not_retried_and_leaves_nothing_behind(nested_sim: RunningSimulator,
                                                                  nested: ZStackClient) -> None:
    await nested.login()
    zone_uuid = new_uuid()
    nested_sim.faults.set(fail_rate=1.0, budget=1)
    with pytest.raises(ZStackOperationError) as caught:
        await nested.infra.create_zone("zone-1", resource_uuid=zone_uuid)
    assert caught.value.code == "SYS.1006" and not caught.value.transient
    assert nested_sim.state.count("zone") == 0 and nested_sim.state.executed("CreateZone") == 0
    zone = await nested.infra.create_zone("zone-1", resource_uuid=zone_uuid)  # the caller's retry, same uuid
    assert zone.uuid == zone_uuid and nested_sim.state.count("zone") == 1


async def test_chaos_never_duplicates_a_resource(outer_sim: RunningSimulator, outer: ZStackClient) -> None:
    """Many creates under random failures and lost answers, each retried by uuid like the engine does."""
    await outer.login()
    outer_sim.faults.set(fail_rate=0.3, drop_rate=0.3, drop_phase="random")
    wanted = {new_uuid(): f"chaos-{i}" for i in range(10)}
    attempts = 0

    async def create(uuid: str, name: str) -> None:
        nonlocal attempts
        for _ in range(20):
            attempts += 1
            try:
                await _lab_vm(outer, name, uuid)
                return
            except (ZStackOperationError, ZStackUnreachableError):
                await asyncio.sleep(0.001)
        raise AssertionError(f"{name} never got created")

    await asyncio.gather(*(create(uuid, name) for uuid, name in wanted.items()))
    outer_sim.faults.clear()
    assert (attempts - len(wanted)) + outer.stats.transport_retries > 0  # faults did happen
    assert sorted(v["uuid"] for v in outer_sim.state.list("vm")) == sorted(wanted)
    assert outer_sim.state.count("volume", type="Root") == len(wanted)
    assert outer_sim.state.count("nic") == len(wanted)
    ips = [n["ip"] for n in outer_sim.state.list("nic")]
    assert len(set(ips)) == len(ips)
    assert outer_sim.state.executed("CreateVmInstance") <= attempts


async def test_concurrent_creates_with_one_uuid_make_one_resource(nested_sim: RunningSimulator,
                                                                  nested: ZStackClient) -> None:
    uuid = new_uuid()
    zones = await asyncio.gather(*(nested.infra.create_zone("same", resource_uuid=uuid) for _ in range(4)))
    assert {z.uuid for z in zones} == {uuid}
    assert nested_sim.state.count("zone") == 1


async def until_found(client: ZStackClient, action: str, name: str, timeout: float = 5.0) -> None:
    """Until a resource named ``name`` is there (a job the caller stopped waiting for carries on)."""
    async with asyncio.timeout(timeout):
        while not await client.query(action, [eq("name", name)]):
            await asyncio.sleep(0.05)


async def test_slow_polls_end_at_the_deadline(outer_sim: RunningSimulator, outer: ZStackClient) -> None:
    await outer.login()
    outer_sim.faults.set(slow_poll=0.5)
    started = time.monotonic()
    with pytest.raises(ZStackTimeoutError) as caught:
        await outer.compute.create_data_volume("slow", disk_size=GiB, deadline=deadline_in(0.3))
    assert time.monotonic() - started < 0.6
    assert caught.value.job_uuid is not None
    outer_sim.faults.clear()
    # The job went on without us: the volume is there once it ends (an idempotent create would find it).
    await until_found(outer, "QueryVolume", "slow")


async def test_no_server_is_unreachable_after_bounded_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ZStackClient(f"http://127.0.0.1:{port}/zstack/v1", "admin", SecretStr("s3cret-pw"),
                          poll_policy=FAST_POLL, retry_policy=RetryPolicy(attempts=3, initial=0.01))
    started = time.monotonic()
    async with client:
        with pytest.raises(ZStackUnreachableError) as caught:
            await client.infra.create_zone("z")
        assert not await client.is_ready(within=0.5)
    assert time.monotonic() - started < 2.0
    assert client.stats.transport_retries == 2
    assert caught.value.code == "CLIENT.UNREACHABLE" and "s3cret-pw" not in str(caught.value)
    assert isinstance(caught.value, ZStackError) and caught.value.system == "zstack"


async def test_health_helpers(make_client: ClientFactory) -> None:
    async with serve_simulator("nested") as sim:
        client = make_client(sim.url)
        assert await client.is_ready() and await client.get_version() == "5.2.1"
        sim.state.ready = False
        assert not await client.is_ready()
        assert client.stats.logins == 0  # health checks need no session
        nodes = await client.list_management_nodes()
        assert len(nodes) == 1 and nodes[0].uuid
