"""Typed errors from ZStack's answers, secret scrubbing, lenient inventories, and resourceUuid duplicates."""

from __future__ import annotations

import pytest

from sandbox.zstack_sim.server import RunningSimulator
from services.errors import ExternalError
from services.zstack import (
    ZStackAuthError,
    ZStackCapacityError,
    ZStackClient,
    ZStackError,
    ZStackInvalidArgumentError,
    ZStackNotFoundError,
    ZStackOperationError,
    ZStackSessionError,
    ZStackTimeoutError,
    new_uuid,
)
from services.zstack.errors import error_from_body, error_from_text, scrub
from services.zstack.inventories import HostInventory, L3NetworkInventory, VmInstanceInventory
from services.zstack.storage_inventories import PrimaryStorageInventory


@pytest.mark.parametrize(("code", "cls"), [
    ("ID.1000", ZStackAuthError), ("ID.1001", ZStackSessionError), ("SYS.1003", ZStackNotFoundError),
    ("SYS.1007", ZStackInvalidArgumentError), ("SYS.1001", ZStackTimeoutError), ("SYS.1006", ZStackOperationError),
    ("VM.1010", ZStackOperationError), ("HOST_ALLOCATION.1000", ZStackCapacityError),
])
def test_codes_map_to_types(code: str, cls: type[ZStackError]) -> None:
    error = error_from_body({"code": code, "description": "d", "details": "x"}, action="CreateVmInstance")
    assert type(error) is cls and isinstance(error, ExternalError) and error.system == "zstack"
    assert (error.code, error.description, error.details, error.action) == (code, "d", "x", "CreateVmInstance")


def test_wrapped_allocation_failure_is_a_capacity_error_with_its_chain() -> None:
    error = error_from_body({
        "code": "SYS.1002", "description": "Unable to create a resource", "details": "unable to allocate hosts",
        "cause": {"code": "HOST_ALLOCATION.1000", "description": "No available host found",
                  "details": "no host having cpu[4], memory[8589934592 bytes] found"},
    }, action="CreateVmInstance", http_status=503)
    assert isinstance(error, ZStackCapacityError) and error.codes() == ["SYS.1002", "HOST_ALLOCATION.1000"]
    assert error.cause is not None and "no host having cpu[4]" in error.cause.details
    assert str(error) == ("ZStack CreateVmInstance failed: Unable to create a resource: unable to allocate hosts "
                          "[SYS.1002]")
    assert error.user_message == str(error)


def test_transient_codes_and_plain_text_errors() -> None:
    assert error_from_body({"code": "SYS.1012"}).transient and not error_from_body({"code": "SYS.1006"}).transient
    assert isinstance(error_from_text(400, "Duplicate job uuid[x]", action="A"), ZStackInvalidArgumentError)
    assert isinstance(error_from_text(404, "the job has been expired", action="A"), ZStackNotFoundError)
    other = error_from_text(500, "boom", action="A")
    assert type(other) is ZStackError and other.code == "HTTP.500" and other.http_status == 500


def test_secrets_are_scrubbed_from_error_text() -> None:
    error = error_from_body({"code": "SYS.1006", "description": "An operation failed",
                             "details": "ssh root:hunter22@10.0.0.2 failed, session 0123abcd"},
                            secrets=["hunter22", "0123abcd", "", "ab"])
    assert "hunter22" not in str(error) and "0123abcd" not in str(error) and "***" in error.details
    assert scrub("no secret here", ["x"]) == "no secret here"


def test_inventories_are_lenient_to_floats_and_extra_fields() -> None:
    host = HostInventory.model_validate({"uuid": "h", "totalMemoryCapacity": 1.073741824e9, "cpuNum": "4",
                                         "availableCpuCapacity": 40.0, "brandNewField": {"x": 1}})
    assert (host.total_memory_capacity, host.cpu_num, host.available_cpu_capacity) == (1073741824, 4, 40)
    assert host.model_extra == {"brandNewField": {"x": 1}}
    l3 = L3NetworkInventory.model_validate({"uuid": "l", "enableIPAM": False, "ipRanges": [{"uuid": "r"}]})
    assert l3.enable_ipam is False and l3.ip_ranges[0].uuid == "r"
    nics = [{"uuid": "n1", "l3NetworkUuid": "a", "ip": "10.0.0.1"},
            {"uuid": "n2", "l3NetworkUuid": "b", "ip": "10.0.1.1"}]
    vm = VmInstanceInventory.model_validate({"uuid": "v", "defaultL3NetworkUuid": "b", "vmNics": nics})
    assert vm.ip_on("b") == "10.0.1.1" and vm.ip_on("a") == "10.0.0.1" and vm.ip_on("zz") is None
    storage = PrimaryStorageInventory.model_validate({"uuid": "p", "availableCapacity": 5.36870912E10,
                                                      "sharedBlocks": [{"uuid": "s", "diskUuid": "36001405aa"}]})
    assert storage.available_capacity == 53687091200 and storage.shared_blocks[0].disk_uuid == "36001405aa"
    with pytest.raises(ValueError):
        HostInventory.model_validate({"uuid": "h", "cpuNum": 1.5})


async def test_duplicate_resource_uuid_is_refused_but_the_client_returns_the_existing_one(
        nested_sim: RunningSimulator, nested: ZStackClient) -> None:
    uuid = new_uuid()
    first = await nested.infra.create_zone("zone-1", resource_uuid=uuid)
    with pytest.raises(ZStackError) as raw:
        await nested.call("CreateZone", {"name": "zone-1", "resourceUuid": uuid})
    assert raw.value.code == "SYS.1000" and "Duplicate entry" in raw.value.details
    again = await nested.infra.create_zone("zone-1", resource_uuid=uuid)
    assert again.uuid == first.uuid and nested_sim.state.count("zone") == 1
    assert nested_sim.state.executed("CreateZone") == 2  # the raw one ran and failed; the idempotent one did not run
    with pytest.raises(ValueError, match="not a ZStack uuid"):
        await nested.infra.create_zone("zone-2", resource_uuid="123")


async def test_find_by_name_refuses_ambiguity(nested: ZStackClient) -> None:
    await nested.compute.create_instance_offering("dup", 1, 1024**3)
    await nested.compute.create_instance_offering("dup", 2, 1024**3)
    with pytest.raises(ZStackError, match="2 instance offerings are named 'dup'"):
        await nested.compute.find_instance_offering_by_name("dup")
    assert await nested.compute.find_instance_offering_by_name("absent") is None
