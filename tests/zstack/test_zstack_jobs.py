"""Async APIs: the 202 and its location, api-jobs answers, job uuids, deadlines, apiTimeout and polling."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid as uuidlib

import httpx
import pytest

from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from services.zstack import (
    PollPolicy,
    ZStackClient,
    ZStackNotFoundError,
    ZStackTimeoutError,
    deadline_in,
)
from tests.zstack.conftest import ClientFactory, login_headers


async def _session(client: ZStackClient) -> dict[str, str]:
    """Raw-HTTP headers with a session of the test's own (the client keeps its session to itself)."""
    return await login_headers(client.base_url)


async def test_async_call_answers_202_then_the_job_reports(make_client: ClientFactory) -> None:
    async with serve_simulator("nested", latency_scale=1.0, durations={"CreateZone": 0.3}) as sim:
        headers = await _session(make_client(sim.url))
        job = uuidlib.uuid4().hex
        async with httpx.AsyncClient(base_url=sim.url, headers=headers) as http:
            accepted = await http.post("/zones", json={"params": {"name": "z"}}, headers={"X-Job-UUID": job})
            running = await http.get(f"/api-jobs/{job}")
            duplicate = await http.post("/zones", json={"params": {"name": "z"}}, headers={"X-Job-UUID": job})
            await asyncio.sleep(0.4)
            done = await http.get(f"/api-jobs/{job}")
            again = await http.get(f"/api-jobs/{job}")
            wrong_method = await http.delete(f"/api-jobs/{job}")
            unknown = await http.get(f"/api-jobs/{uuidlib.uuid4().hex}")
            bad_job_uuid = await http.post("/zones", json={"params": {"name": "z"}}, headers={"X-Job-UUID": "x" * 31})
    assert accepted.status_code == 202
    assert accepted.json() == {"location": f"{sim.url}/api-jobs/{job}", "apiTimeout": 1_800_000}
    assert (running.status_code, running.json()) == (202, {})
    assert (duplicate.status_code, duplicate.text) == (400, f"Duplicate job uuid[{job}]")
    assert done.status_code == 200 and done.json()["inventory"]["name"] == "z"
    assert again.json() == done.json()
    assert wrong_method.status_code == 405 and "only GET" in wrong_method.text
    assert (unknown.status_code, unknown.text) == (404, "the job has been expired")
    assert bad_job_uuid.status_code == 400 and "X-Job-UUID" in bad_job_uuid.text
    assert sim.state.count("zone") == 1


async def test_failed_job_answers_503_with_the_error(nested_sim: RunningSimulator, nested: ZStackClient) -> None:
    zone = uuidlib.uuid4().hex
    with pytest.raises(ZStackNotFoundError) as caught:
        await nested.call("CreateCluster", {"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"})
    assert caught.value.code == "SYS.1003" and caught.value.http_status == 503
    assert caught.value.details == f"invalid field[zoneUuid], resource[uuid:{zone}, type:ZoneVO] not found"


async def test_rest_layer_routing_errors(nested_sim: RunningSimulator, nested: ZStackClient) -> None:
    headers = await _session(nested)
    vm_uuid = uuidlib.uuid4().hex
    async with httpx.AsyncClient(base_url=nested_sim.url, headers=headers) as http:
        unmapped_action = await http.put(f"/vm-instances/{vm_uuid}/actions", json={"rebootEverything": {}})
        unknown_path = await http.get("/no-such-things")
        outside = await http.get(nested_sim.url.replace("/zstack/v1", "/elsewhere"))
        wrong_method = await http.patch("/zones")
        not_json = await http.post("/zones", content=b"{not json")
    assert unmapped_action.status_code == 400 and "doesn't contain action mapping" in unmapped_action.text
    assert (unknown_path.status_code, unknown_path.text) == (404, "no api mapping to /v1/no-such-things")
    assert outside.status_code == 404
    assert wrong_method.status_code == 405
    assert not_json.status_code == 400


async def test_deadline_stops_polling_and_the_job_can_be_awaited_later(make_client: ClientFactory) -> None:
    async with serve_simulator("nested", latency_scale=1.0, durations={"CreateZone": 0.6}) as sim:
        client = make_client(sim.url)
        await client.login()
        started = time.monotonic()
        with pytest.raises(ZStackTimeoutError) as caught:
            await client.call("CreateZone", {"name": "slow"}, deadline=deadline_in(0.15))
        assert time.monotonic() - started < 0.4
        assert caught.value.job_uuid is not None and caught.value.code == "sdk.1001"
        async with asyncio.timeout(2):  # the job carries on without its caller, and its result is kept
            while sim.state.count("zone") == 0:
                await asyncio.sleep(0.05)
        assert [z["name"] for z in await client.query("QueryZone")] == ["slow"]


async def test_api_timeout_bounds_the_job_on_both_sides(make_client: ClientFactory) -> None:
    async with serve_simulator("nested", latency_scale=1.0, durations={"CreateZone": 5.0},
                               api_timeouts_ms={"CreateZone": 200}) as sim:
        client = make_client(sim.url)
        await client.login()
        started = time.monotonic()
        with pytest.raises(ZStackTimeoutError):
            await client.infra.create_zone("never")
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0.25)
        job = next(j for j in sim.state.jobs.values() if j.action == "CreateZone")
        assert job.status == 503 and job.body["error"]["code"] == "SYS.1001"
        assert sim.state.count("zone") == 0


async def test_polling_follows_the_policy_and_stops_at_the_result(make_client: ClientFactory) -> None:
    policy = PollPolicy(initial=0.02, factor=2.0, cap=0.08)
    async with serve_simulator("nested", latency_scale=1.0, durations={"CreateZone": 0.25}) as sim:
        client = make_client(sim.url, poll_policy=policy)
        await client.login()
        await client.infra.create_zone("z")
        job = next(j for j in sim.state.jobs.values() if j.action == "CreateZone")
    # Delays 0.02, 0.04, 0.08, 0.08, 0.08 ... reach 0.25 s after 5 polls; slow HTTP can only make it fewer,
    # and the job's own start-up at most one more.
    assert policy.polls_for(0.25) == 5
    assert 2 <= job.polls <= 6
    assert job.polls_after_done == 1  # the poll that fetched the result, and none after it
    assert client.stats.polls == job.polls


def test_poll_policy_schedule() -> None:
    policy = PollPolicy()
    delays = [d for _, d in zip(range(12), policy.delays(), strict=False)]
    assert delays[0] == 0.2 and delays[-1] == 5.0 and all(b >= a for a, b in itertools.pairwise(delays))
    assert policy.polls_for(0.1) == 1
    assert policy.polls_for(600) == 127
    assert 0 <= policy.lateness_for(600) < 5.0
    with pytest.raises(ValueError):
        PollPolicy(initial=0)
