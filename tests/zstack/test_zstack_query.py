"""Query conditions: the builder's text, and the simulator's ZStack semantics through the real client."""

from __future__ import annotations

import httpx
import pytest

from sandbox.zstack_sim.server import RunningSimulator
from services.zstack import (
    Query,
    ZStackClient,
    ZStackInvalidArgumentError,
    eq,
    in_,
    is_null,
    like,
    ne,
    not_in,
    not_like,
    not_null,
)
from services.zstack.query import Cond, ge, gt, le, lt
from tests.zstack.conftest import ClientFactory, login_headers


def test_conditions_render_as_zstack_expects() -> None:
    assert eq("name", "zone 1").render() == "name=zone 1"
    assert ne("state", "Destroyed").render() == "state!=Destroyed"
    assert gt("cpuNum", 2).render() == "cpuNum>2"
    assert lt("cpuNum", 2).render() == "cpuNum<2"
    assert ge("memorySize", 1024).render() == "memorySize>=1024"
    assert le("memorySize", 1024).render() == "memorySize<=1024"
    assert in_("uuid", ["a", "b"]).render() == "uuid?=a,b"
    assert not_in("uuid", ["a"]).render() == "uuid!?=a"
    assert like("__userTag__", "labbot::lab::%").render() == "__userTag__~=labbot::lab::%"
    assert not_like("name", "x%").render() == "name!~=x%"
    assert is_null("hostUuid").render() == "hostUuid is null"
    assert not_null("hostUuid").render() == "hostUuid not null"
    assert eq("system", True).render() == "system=true"
    assert eq("vmNics.ip", "10.0.0.5").render() == "vmNics.ip=10.0.0.5"


@pytest.mark.parametrize("make", [
    lambda: eq("na me", "x"), lambda: eq("name=", "x"), lambda: in_("uuid", []), lambda: in_("uuid", ["a,b"]),
    lambda: Cond("name", "is null", "x"), lambda: Cond("name", "=", None), lambda: Cond("name", "?=", "a"),
    lambda: Query(limit=-1), lambda: Query(sort="-na me"), lambda: Query(fields=["a b"]), lambda: Query(["x"]).params(),
])
def test_malformed_conditions_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_query_params_in_sdk_order() -> None:
    query = Query([eq("state", "Running"), "vmNics.ip=10.0.0.5"], limit=10, start=20, sort="createDate",
                  fields=["uuid", "name"], reply_with_count=True)
    assert query.params() == [("q", "state=Running"), ("q", "vmNics.ip=10.0.0.5"), ("limit", "10"), ("start", "20"),
                              ("replyWithCount", "true"), ("sort", "+createDate"), ("fields", "uuid,name")]


async def _offerings(client: ZStackClient, count: int) -> list[str]:
    names = [f"io-{i:02d}" for i in range(count)]
    for index, name in enumerate(names):
        await client.compute.create_instance_offering(name, cpu_num=1 + index % 4, memory_size=(1 + index) * 1024**3)
    return names


async def test_conditions_sort_fields_and_counts(nested: ZStackClient) -> None:
    await _offerings(nested, 6)
    found = await nested.query("QueryInstanceOffering", [ge("cpuNum", 3), like("name", "io-0%")])
    assert sorted(o["name"] for o in found) == ["io-02", "io-03"]
    assert await nested.count("QueryInstanceOffering", [in_("name", ["io-01", "io-04", "nope"])]) == 2
    assert await nested.count("QueryInstanceOffering", [not_in("name", ["io-01"]), ne("cpuNum", 1)]) == 3
    assert await nested.count("QueryInstanceOffering", [not_like("name", "io-0_")]) == 0
    page = await nested.query("QueryInstanceOffering", Query(sort="-memorySize", limit=2, fields=["name"]))
    assert page == [{"name": "io-05"}, {"name": "io-04"}]
    assert await nested.query("QueryZone", [is_null("description"), not_null("uuid")]) == []


async def test_paging_reads_every_page_without_overlap(nested: ZStackClient) -> None:
    names = await _offerings(nested, 7)
    found = await nested.query("QueryInstanceOffering", page_size=3)
    assert sorted(o["name"] for o in found) == names
    assert nested.stats.requests >= 3  # 3 + 3 + 1


async def test_joins_nested_lists_and_tags(outer: ZStackClient) -> None:
    image = await outer.storage.find_image_by_name("sandbox-jump")
    offering = await outer.compute.find_instance_offering_by_name("sandbox-small")
    public = await outer.network.find_l3_network_by_name("sandbox-public")
    assert image and offering and public
    vm = await outer.compute.create_vm_instance("tagged", image_uuid=image.uuid, instance_offering_uuid=offering.uuid,
                                        l3_network_uuids=[public.uuid], user_tags=["labbot::lab::alpha"])
    ip = vm.ip_on(public.uuid)
    assert ip and ip.startswith("198.18.")
    assert [v["uuid"] for v in await outer.query("QueryVmInstance", [eq("vmNics.ip", ip)])] == [vm.uuid]
    assert len(await outer.query("QueryVmInstance", [eq("zone.name", "lab-platform-zone")])) == 1
    assert await outer.query("QueryVmInstance", [eq("zone.name", "elsewhere")]) == []
    assert [v.uuid for v in await outer.compute.find_vms_by_user_tag("labbot::lab::%")] == [vm.uuid]
    assert await outer.compute.find_vms_by_user_tag("other::%") == []
    tags = await outer.query_user_tags("labbot::lab::%", resource_type="VmInstanceVO")
    assert [(t.resource_uuid, t.tag) for t in tags] == [(vm.uuid, "labbot::lab::alpha")]


async def test_get_by_uuid_path_answers_inventories(nested_sim: RunningSimulator, nested: ZStackClient) -> None:
    zone = await nested.infra.create_zone("z")
    async with httpx.AsyncClient(base_url=nested_sim.url, headers=await login_headers(nested_sim.url)) as http:
        found = (await http.get(f"/zones/{zone.uuid}")).json()
        missing = (await http.get("/zones/0123456789abcdef0123456789abcdef")).json()
        counted = (await http.get("/zones", params={"count": "true"})).json()
        no_operator = await http.get("/zones", params={"q": "name"})
        bad_limit = await http.get("/zones", params={"limit": "ten"})
    assert [z["uuid"] for z in found["inventories"]] == [zone.uuid]
    assert missing == {"inventories": []}
    assert counted == {"total": 1}
    assert no_operator.status_code == 400 and "doesn't contain any query operator" in no_operator.text
    assert bad_limit.status_code == 400 and "limit" in bad_limit.text


async def test_unknown_field_is_refused_not_silently_empty(nested: ZStackClient) -> None:
    with pytest.raises(ZStackInvalidArgumentError) as caught:
        await nested.query("QueryZone", [eq("nmae", "x")])
    assert caught.value.code == "SYS.1007" and "nmae" in caught.value.details


async def test_queries_renew_an_expired_session(nested_sim: RunningSimulator, make_client: ClientFactory) -> None:
    client = make_client(nested_sim.url)
    await client.infra.create_zone("z")
    nested_sim.state.expire_sessions()
    assert len(await client.query("QueryZone")) == 1
    assert client.stats.relogins == 1
