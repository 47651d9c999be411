"""The platform preflight (``prepare`` and ``labbot doctor``) against the outer simulator: the sandbox profile
fits, and a deliberately broken profile gets every one of its problems named, with what to do."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from config.profiles import LabProfile, load_profile
from sandbox.zstack_sim.api_images import image_record
from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from sandbox.zstack_sim.store import new_uuid
from services.errors import ConfigError
from services.labs.preflight import check_platform
from services.zstack import ZStackClient
from tests.zstack.conftest import FAST_POLL, FAST_RETRY, PASSWORD

PROFILES = Path(__file__).resolve().parents[2] / "config" / "profiles"


@pytest.fixture
async def platform() -> AsyncIterator[tuple[RunningSimulator, ZStackClient]]:
    """The outer simulator plus what a badly prepared platform has: an ISO, an aarch64 image, and an L3
    network without the Userdata service."""
    async with serve_simulator("outer") as sim:
        state = sim.app.state.sim.state
        backup = next(iter(state.records["backup_storage"]))
        state.add("image", image_record(new_uuid(), "installer-iso", "http://x/zstack.iso", [backup], status="Ready",
                                        fmt="iso", media_type="ISO"))
        state.add("image", image_record(new_uuid(), "arm-image", "http://x/arm.qcow2", [backup], status="Ready",
                                        architecture="aarch64"))
        public = next(r for r in state.records["l3"].values() if r["name"] == "sandbox-public")
        plain = copy.deepcopy(public) | {"uuid": new_uuid(), "name": "plain-net"}
        plain["networkServices"] = [s | {"l3NetworkUuid": plain["uuid"]} for s in plain["networkServices"]
                                    if s["networkServiceType"] != "Userdata"]
        state.add("l3", plain)
        async with ZStackClient(sim.url, "admin", PASSWORD, poll_policy=FAST_POLL, retry_policy=FAST_RETRY) as zs:
            yield sim, zs


def broken_profile(tmp_path: Path) -> LabProfile:
    """The sandbox profile with one thing wrong per check."""
    data = yaml.safe_load((PROFILES / "sandbox.yaml").read_text())
    data["vm1"].update(image="installer-iso", instance_offering="no-such-offering",
                       l3_networks=["plain-net", "no-such-net"])
    data["vm2"].update(image="arm-image", instance_offering="sandbox-small")
    data["lab_network"]["vxlan_pool"] = "no-such-pool"
    path = tmp_path / "sandbox.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_profile(path)


async def test_the_sandbox_profile_fits_its_platform(platform):
    _, zs = platform
    profile = load_profile(PROFILES / "sandbox.yaml")
    report = await check_platform(zs, profile)
    assert report.problems == [], report.problems
    assert {c.name for c in report.checks} == {"vm1_image", "vm2_image", "vm1_offering", "vm2_offering",
                                               "l3:sandbox-public", "vxlan_pool"}
    assert set(report.uuids) == {c.name for c in report.checks}
    report.raise_for_problems(profile)  # nothing to raise


async def test_a_broken_profile_gets_every_problem_named(platform, tmp_path: Path):
    sim, zs = platform
    profile = broken_profile(tmp_path)
    report = await check_platform(zs, profile)
    problems = {c.name: c.detail for c in report.problems}
    assert set(problems) == {"vm1_image", "vm2_image", "vm1_offering", "vm2_offering", "l3:plain-net",
                             "l3:no-such-net", "vxlan_pool"}, problems
    assert "is a ISO, not a RootVolumeTemplate" in problems["vm1_image"]
    assert "is aarch64, but the profile's vm2.architecture is x86_64" in problems["vm2_image"]
    assert "no instance offering called `no-such-offering`" in problems["vm1_offering"]
    assert "needs at least 4 CPUs and 7 GiB" in problems["vm2_offering"]
    assert "offers no Userdata service" in problems["l3:plain-net"] and "no-such-net" in problems["l3:plain-net"]
    assert "no L3 network called `no-such-net`" in problems["l3:no-such-net"]
    assert "no VXLAN pool called `no-such-pool`" in problems["vxlan_pool"]
    with pytest.raises(ConfigError) as refused:
        report.raise_for_problems(profile)
    assert all(detail in str(refused.value) for detail in problems.values())
    assert sim.app.state.sim.state.executed("CreateVmInstance") == 0


async def test_a_shared_vpc_whose_range_holds_the_nested_range_is_refused(platform, tmp_path: Path):
    """Without a per-lab network, VM2 sits on a platform network (here the box's sandbox-vpc, 198.19.0.0/20):
    a nested range inside it is named as a problem; one outside it passes."""
    _, zs = platform
    data = yaml.safe_load((PROFILES / "sandbox.yaml").read_text())
    del data["lab_network"]
    data["vm1"]["l3_networks"] = ["sandbox-public", "sandbox-vpc"]
    data["vm2"]["l3_networks"] = ["sandbox-vpc"]
    path = tmp_path / "sandbox.yaml"
    path.write_text(yaml.safe_dump(data))
    report = await check_platform(zs, load_profile(path))
    assert report.problems == [], report.problems
    data["nested"]["network"].update(ip_start="198.19.1.10", ip_end="198.19.1.100", gateway="198.19.1.1")
    path.write_text(yaml.safe_dump(data))
    report = await check_platform(zs, load_profile(path))
    problems = {c.name: c.detail for c in report.problems}
    assert set(problems) == {"l3:sandbox-vpc"}, problems
    assert "nested.network (198.19.1.0/24) of profile sandbox overlaps 198.19.0.0/20 of `sandbox-vpc`" in (
        problems["l3:sandbox-vpc"])
