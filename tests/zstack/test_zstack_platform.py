"""What a real lab platform does that the lab needs, client and simulator over real HTTP: per-VM CPU mode
(UpdateResourceConfig), userdata only through the default L3's Userdata service, the nested AddKVMHost's
vmx/svm check, an idempotent AddIscsiServer, ISO images, and RestServer's own parsing (q, sort, deletes of
what does not exist) as a client other than labbot's sends it."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from services.zstack import ZStackClient, ZStackInvalidArgumentError, ZStackOperationError
from services.zstack.wire import new_uuid
from tests.zstack.conftest import ClientFactory
from tests.zstack.test_zstack_outer_flow import RecordingHooks

GiB = 1024**3


@pytest.fixture
async def hooked() -> AsyncIterator[tuple[RunningSimulator, RecordingHooks]]:
    hooks = RecordingHooks()
    async with serve_simulator("outer", hooks=hooks) as sim:
        yield sim, hooks


async def _vm(zs: ZStackClient, name: str, l3_names: list[str], *, strategy: str = "InstantStart") -> str:
    image = await zs.storage.find_image_by_name("sandbox-jump")
    small = await zs.compute.find_instance_offering_by_name("sandbox-small")
    assert image is not None and small is not None
    l3s = [(await zs.network.find_l3_network_by_name(n)) for n in l3_names]
    vm = await zs.compute.create_vm_instance(name, image_uuid=image.uuid, instance_offering_uuid=small.uuid,
                                     l3_network_uuids=[n.uuid for n in l3s if n], ssh_public_key="ssh-ed25519 AAAAC3 k",
                                     strategy=strategy)
    return vm.uuid


async def test_cpu_mode_is_bound_to_a_stopped_vm_and_read_when_it_starts(hooked, make_client: ClientFactory):
    sim, hooks = hooked
    zs = make_client(sim.url)
    vm = await _vm(zs, "vm2", ["sandbox-vpc"], strategy="CreateStopped")
    assert (await zs.compute.get_vm(vm)).state == "Stopped" and vm not in hooks.plans
    assert await zs.compute.get_resource_config("kvm", "vm.cpuMode", vm) == "none"  # the global default

    await zs.compute.update_resource_config("kvm", "vm.cpuMode", vm, "host-passthrough")
    assert await zs.compute.get_resource_config("kvm", "vm.cpuMode", vm) == "host-passthrough"
    await zs.compute.start_vm(vm)
    assert hooks.plans[vm].nested_virtualization is True

    plain = await _vm(zs, "vm1", ["sandbox-vpc"])
    assert hooks.plans[plain].nested_virtualization is False

    # ZStack's validation: a value outside the config's valid values, a resource type it is not bound to.
    with pytest.raises(ZStackInvalidArgumentError, match="not a valid value"):
        await zs.compute.update_resource_config("kvm", "vm.cpuMode", vm, "host-passthru")
    image = await zs.storage.find_image_by_name("sandbox-jump")
    with pytest.raises(ZStackInvalidArgumentError, match="cannot be bound to resource type ImageVO"):
        await zs.compute.update_resource_config("kvm", "vm.cpuMode", image.uuid, "host-model")


async def test_key_and_password_reach_a_vm_only_through_a_default_l3_with_userdata(hooked,
                                                                                   make_client: ClientFactory):
    sim, hooks = hooked
    zs = make_client(sim.url)
    public = await zs.network.find_l3_network_by_name("sandbox-public")
    state = sim.app.state.sim.state
    record = state.get("l3", public.uuid)
    record["networkServices"] = [s for s in record["networkServices"] if s["networkServiceType"] != "Userdata"]

    without = await _vm(zs, "no-userdata", ["sandbox-public", "sandbox-vpc"])
    assert hooks.plans[without].ssh_public_keys == [] and hooks.plans[without].root_password is None

    # The same VM with the VPC (which has Userdata) as its default L3 gets its key.
    with_key = await _vm(zs, "vpc-default", ["sandbox-vpc", "sandbox-public"])
    assert hooks.plans[with_key].ssh_public_keys == ["ssh-ed25519 AAAAC3 k"]


class NoVirtualisation:
    """Nested hooks of a host whose CPU shows neither vmx nor svm."""

    async def hvm_cpu_flag(self, ip: str) -> str | None:
        return None

    async def deploy_host(self, ip: str, port: int, username: str, password: str) -> None:
        return None

    async def check_login(self, ip: str, port: int, username: str, password: str) -> None:
        return None

    async def discover_iscsi(self, ip: str, port: int) -> list[object]:
        return []


async def test_nested_add_kvm_host_fails_as_zstack_does_without_vmx_or_svm(make_client: ClientFactory):
    async with serve_simulator("nested", hooks=NoVirtualisation()) as sim:
        zs = make_client(sim.url)
        zone = await zs.infra.create_zone("zone-1")
        cluster = await zs.infra.create_cluster("cluster-1", zone.uuid, hypervisor_type="KVM")
        with pytest.raises(ZStackOperationError) as failed:
            await zs.infra.add_kvm_host("vm2", "198.19.0.20", cluster.uuid, username="root", password=SecretStr("pw"))
        assert "cannot find either 'vmx' or 'svm' in /proc/cpuinfo" in str(failed.value)
        assert sim.app.state.sim.state.count("host") == 0  # the new host is rolled back


async def test_add_iscsi_server_is_found_by_portal_not_by_resource_uuid(nested: ZStackClient, nested_sim):
    first = await nested.storage.add_iscsi_server("198.19.0.11", port=3260, name="vm1", resource_uuid=new_uuid())
    # A retry whose resourceUuid the server did not keep (AddIscsiServer's server side is closed source).
    again = await nested.storage.add_iscsi_server("198.19.0.11", port=3260, name="vm1", resource_uuid=new_uuid())
    assert again.uuid == first.uuid
    assert nested_sim.app.state.sim.state.count("iscsi_server") == 1
    assert nested_sim.app.state.sim.state.executed("AddIscsiServer") == 1


async def test_an_iso_is_added_as_an_iso_and_never_as_a_root_volume_template(nested: ZStackClient, nested_sim):
    state = nested_sim.app.state.sim.state
    with pytest.raises(ZStackInvalidArgumentError, match="format iso cannot have mediaType RootVolumeTemplate"):
        await nested.storage.add_image("cd", "http://198.19.0.11:8000/cd.iso", [new_uuid()], format="iso",
                               media_type="RootVolumeTemplate")
    assert state.executed("AddImage") == 0
    zone = await nested.infra.create_zone("zone-1")
    assert zone  # a session exists; the refusal above never reached the server


@pytest.fixture
async def session(outer_sim: RunningSimulator) -> tuple[str, str]:
    """(url, session uuid) from a login as any ZStack client makes it: the password's SHA-512 hex."""
    body = {"logInByAccount": {"accountName": "admin", "password": hashlib.sha512(b"password").hexdigest()}}
    async with httpx.AsyncClient() as raw:
        answer = await raw.put(f"{outer_sim.url}/accounts/login", json=body)
    return outer_sim.url, answer.json()["inventory"]["uuid"]


async def test_query_conditions_split_at_zstacks_first_operator_like_restserver(session):
    url, token = session
    headers = {"Authorization": f"OAuth {token}"}
    async with httpx.AsyncClient() as raw:
        # RestServer tries "!=" before "=": the field becomes "name=a", which no inventory has.
        answer = await raw.get(f"{url}/images", params=[("q", "name=sandbox!=jump")], headers=headers)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "SYS.1007", answer.text
        missing = await raw.get(f"{url}/images", params=[("q", "name")], headers=headers)
        assert missing.status_code == 400 and "doesn't contain any query operator" in missing.text
        # An unencoded "+" arrives as a space; RestServer trims the value and sorts ascending.
        ascending = await raw.get(f"{url}/images?sort=+name&fields=name", headers=headers)
        assert ascending.status_code == 200, ascending.text
        names = [i["name"] for i in ascending.json()["inventories"]]
        assert names == sorted(names) and len(names) >= 3


async def test_deleting_an_image_that_does_not_exist_succeeds_as_zstack_does(session):
    url, token = session
    headers = {"Authorization": f"OAuth {token}", "X-Job-UUID": new_uuid()}
    async with httpx.AsyncClient() as raw:
        accepted = await raw.delete(f"{url}/images/{new_uuid()}", headers=headers)
        assert accepted.status_code == 202
        job = await _job(raw, accepted.json()["location"])
        assert (job.status_code, job.json()) == (200, {})
        bad = await raw.delete(f"{url}/images/not-a-uuid", headers={**headers, "X-Job-UUID": new_uuid()})
        job = await _job(raw, bad.json()["location"])
        assert job.status_code == 503 and job.json()["error"]["code"] == "SYS.1003"
        assert "invalid value[not-a-uuid] of field [uuid]" in job.json()["error"]["details"]


async def _job(raw: httpx.AsyncClient, location: str) -> httpx.Response:
    for _ in range(200):
        answer = await raw.get(location)
        if answer.status_code != 202:
            return answer
        await _pause()
    raise AssertionError(f"job {location} did not finish")


async def _pause() -> None:
    await asyncio.sleep(0.01)  # a job of the in-memory simulator finishes within a few event-loop turns

