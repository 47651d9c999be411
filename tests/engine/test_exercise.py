"""Exercise labs in the lab-in-a-box, for real: labbot seeds the start, a student does a task by hand over SSH
and through the nested API, `/lab check` reads the machines (and changes nothing), `/lab solve` does the rest.

The checks fail task by task on the lab as handed out, flip to done as the student's own commands land (tgt
on VM1, the nested ZStack's API through VM1), and all pass on a lab whose every task labbot did itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.errors import ConflictError, PermissionDeniedError
from services.iscsi.disk import find_data_disk
from services.iscsi.initiator import read_initiator_name
from services.labs.models import LabState, StepState
from services.labs.notifier import NoticeKind
from services.labs.service import Actor
from services.labs.tasks import TASK_STEPS
from services.shell import join
from tests.conftest import on_database
from tests.engine.sandbox_lab import OWNER, box_fixture, lab_world

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(600)]

box = box_fixture("exercise")
STUDENT_IQN = "iqn.2026-12.edu.student:disk1"


def verdicts(view) -> dict[str, tuple[bool, str]]:  # type: ignore[no-untyped-def]
    return {t.step: (t.done, t.detail) for t in view.exercise.tasks}


@on_database("postgres")
async def test_exercise_checked_by_hand_and_solved(box, database_url: str, tmp_path: Path) -> None:
    async with lab_world(box, database_url, tmp_path) as world:
        view = await world.service.create(OWNER, name="ex", exercise=True)
        await world.runtime.engine.wait_idle(view.id, timeout=300)
        lab = await world.lab_row("ex")
        assert lab.state == LabState.READY, (lab.failed_step, lab.error)
        steps = await world.steps(lab.id)
        # The seed: keys, VMs, disk, SSH and the nested image served on VM1 done by labbot; every student task
        # pending, no first health check.
        assert {n for n, s in steps.items() if s.state == StepState.DONE} == {
            "prepare", "create_vms", "attach_volume", "wait_ssh", "serve_image"}
        assert all(steps[n].state == StepState.PENDING for n in TASK_STEPS)

        # As handed out, every task fails its check, each with its own hint, and nothing changes on VM1.
        async with world.lab_ssh(lab) as ssh:
            targets_before = (await ssh.run("vm1", "tgtadm --lld iscsi --op show --mode target", timeout=30)).stdout
        checked = await world.service.check(OWNER, "ex")
        found = verdicts(checked)
        assert not any(done for done, _ in found.values())
        assert "VM1 exports no iSCSI target on 3260" in found["iscsi_target"][1]
        assert "not answering on VM2:8080" in found["install_zstack"][1]
        assert "comes after install_zstack" in found["nested_compute"][1]
        assert checked.exercise is not None and (checked.exercise.done, checked.exercise.total) == (2, 8)
        async with world.lab_ssh(lab) as ssh:
            after = (await ssh.run("vm1", "tgtadm --lld iscsi --op show --mode target", timeout=30)).stdout
        assert after == targets_before

        # The student exports the disk with tgt by hand, but forgets the ACL: the check says exactly that.
        async with world.lab_ssh(lab) as ssh:
            disk = await find_data_disk(ssh.runner("vm1"), lab.volume_uuid or "", None)
            initiator = await read_initiator_name(ssh.runner("vm2"))
            for args in (["--op", "new", "--mode", "target", "--tid", "7", "-T", STUDENT_IQN],
                         ["--op", "new", "--mode", "logicalunit", "--tid", "7", "--lun", "1", "-b", disk]):
                await ssh.run("vm1", "tgtadm --lld iscsi " + join(args), timeout=30)
        found = verdicts(await world.service.check(OWNER, "ex"))
        assert not found["iscsi_target"][0]
        assert f"VM2's initiator {initiator} is not allowed by the target's ACL" in found["iscsi_target"][1]

        async with world.lab_ssh(lab) as ssh:
            await ssh.run("vm1", "tgtadm --lld iscsi " + join(
                ["--op", "bind", "--mode", "target", "--tid", "7", "--initiator-name", initiator]), timeout=30)
        checked = await world.service.check(OWNER, "ex")
        found = verdicts(checked)
        assert found["iscsi_target"][0], found["iscsi_target"]
        assert STUDENT_IQN in found["iscsi_target"][1]
        assert not found["install_zstack"][0]
        lab = await world.lab_row("ex")
        assert lab.iscsi_iqn == STUDENT_IQN and lab.iscsi_wwid  # what the solve of later tasks builds on
        assert (await world.steps(lab.id))["iscsi_target"].state == StepState.DONE

        # Stuck at the install: labbot does it, audited with who asked; a stranger may not ask.
        with pytest.raises(PermissionDeniedError):
            await world.service.solve(Actor("U_STRANGER"), "ex", "install_zstack")
        with pytest.raises(ConflictError, match="already done"):
            await world.service.solve(OWNER, "ex", "iscsi_target")
        await world.service.solve(OWNER, "ex", "install_zstack")
        await world.runtime.engine.wait_idle(lab.id, timeout=300)
        lab = await world.wait_state("ex", {LabState.READY, LabState.FAILED})
        assert lab.state == LabState.READY, (lab.failed_step, lab.error)
        events = await world.events(lab.id)
        assert any("solve install_zstack asked by U_OWNER" in e.detail for e in events)

        # The student adds zone, cluster and VM2 as KVM host through the nested API: nested_compute flips.
        async with world.nested(lab) as nested:
            zone = await nested.infra.create_zone("student-zone")
            cluster = await nested.infra.create_cluster("student-cluster", zone.uuid)
            password = world.runtime.box.decrypt(lab.host_password_enc or "")
            await nested.infra.add_kvm_host("student-host", lab.vm2_ip or "", cluster.uuid, username="root",
                                      password=password)
        found = verdicts(await world.service.check(OWNER, "ex"))
        assert found["nested_compute"][0], found["nested_compute"]
        assert "no iSCSI server" in found["nested_storage"][1]

        # labbot does the rest on the student's own target and cluster; then every check passes.
        await world.service.solve(OWNER, "ex", "nested_vm")
        await world.runtime.engine.wait_idle(lab.id, timeout=300)
        lab = await world.wait_state("ex", {LabState.READY, LabState.FAILED})
        assert lab.state == LabState.READY, (lab.failed_step, lab.error)
        final = await world.service.check(OWNER, "ex")
        assert all(done for done, _ in verdicts(final).values()), verdicts(final)
        assert final.exercise is not None and final.exercise.completed_at is not None
        assert NoticeKind.EXERCISE_COMPLETE in world.notices.kinds("ex")
        counts = await world.nested_counts(lab)
        assert counts["zone"] == 1 and counts["cluster"] == 1 and counts["host"] == 1  # the student's, not doubles
        assert counts["primary_storage"] == 1 and counts["vm"] == 1

        await world.service.destroy(OWNER, "ex")
        await world.runtime.engine.wait_idle(lab.id, timeout=300)
        lab = await world.lab_row("ex")
        assert lab.state == LabState.DESTROYED
        assert await world.machine_leftovers(lab) == []
