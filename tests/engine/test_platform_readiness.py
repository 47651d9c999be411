"""A lab on a platform that cannot carry it fails early, in the lab-in-a-box, with what to change.

* VM2 without a CPU mode that passes vmx/svm through: the sandbox VM's /proc/cpuinfo (derived from its
  kvm/vm.cpuMode) has no flag, and the build fails in ``wait_ssh``, seconds after SSH works, instead of in
  the nested AddKVMHost after the whole ZStack install.
* A profile naming what the platform lacks: ``prepare`` names every problem and no VM is created.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.labs.models import LabState, StepState
from tests.engine.sandbox_lab import OWNER, box_fixture, lab_world

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(240)]

box = box_fixture("ready")
PROFILES = Path(__file__).resolve().parents[2] / "config" / "profiles"


def sandbox_profile(directory: Path, **changes: dict[str, object]) -> Path:
    """A profiles directory holding the sandbox profile with ``changes`` merged into its sections."""
    data = yaml.safe_load((PROFILES / "sandbox.yaml").read_text())
    for section, values in changes.items():
        data[section] = {key: value for key, value in {**data[section], **values}.items() if value is not None}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sandbox.yaml").write_text(yaml.safe_dump(data))
    return directory


async def test_vm2_without_nested_virtualisation_fails_right_after_ssh_saying_what_to_change(
        box, database_url: str, tmp_path: Path):
    profiles = sandbox_profile(tmp_path / "profiles", vm2={"cpu_mode": None})
    async with lab_world(box, database_url, tmp_path, profiles_dir=profiles) as world:
        view = await world.service.create(OWNER, name="novmx")
        await world.runtime.engine.wait_idle(view.id, timeout=120)
        lab = await world.lab_row("novmx")
        assert (lab.state, lab.failed_step) == (LabState.FAILED, "wait_ssh"), (lab.state, lab.error)
        assert "neither vmx nor svm" in lab.error and "vm2.cpu_mode: host-passthrough" in lab.error, lab.error
        steps = await world.steps(lab.id)
        assert steps["install_zstack"].state != StepState.DONE and not steps["install_zstack"].output_tail
        # The platform never got the setting, so the VM really runs without the flag.
        assert world.sim.app.state.sim.state.resource_configs == {}
        async with world.lab_ssh(lab) as ssh:
            shown = await ssh.run("vm2", "grep -c -w -E 'vmx|svm' /proc/cpuinfo", timeout=30, check=False)
            assert shown.stdout.strip() == "0"
            host = await ssh.run("vm1", "grep -c processor /proc/cpuinfo", timeout=30)
            assert int(host.stdout) >= 1  # the rest of the host's cpuinfo is there


async def test_a_profile_the_platform_cannot_carry_is_refused_in_prepare(box, database_url: str, tmp_path: Path):
    profiles = sandbox_profile(tmp_path / "profiles", vm1={"image": "no-such-image"},
                               vm2={"instance_offering": "sandbox-small"})
    async with lab_world(box, database_url, tmp_path, profiles_dir=profiles) as world:
        view = await world.service.create(OWNER, name="unfit")
        await world.runtime.engine.wait_idle(view.id, timeout=60)
        lab = await world.lab_row("unfit")
        assert (lab.state, lab.failed_step) == (LabState.FAILED, "prepare"), (lab.state, lab.error)
        assert "no image called `no-such-image`" in lab.error, lab.error
        assert "needs at least 4 CPUs and 7 GiB" in lab.error, lab.error
        assert world.sim.app.state.sim.state.executed("CreateVmInstance") == 0
