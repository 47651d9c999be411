"""Failures in the lab-in-a-box: the lab says which step failed and why; `/lab retry` finishes it; destroy of a
failed lab leaves nothing.

The faults are real ones: the outer simulator answering every create with ZStack's internal error, and VM1
becoming unreachable by SSH (its connections cut and a host route that refuses new ones) right after labbot
first reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from sandbox import system
from services.crypto import SecretBox
from services.labs.build import steps as steps_module
from services.labs.models import LabState, StepState
from services.labs.notifier import NoticeKind
from tests.conftest import on_database
from tests.engine.sandbox_lab import OWNER, SandboxBox, box_fixture, lab_world
from tests.sandbox.labbox import drop_connections

PROFILES = Path(__file__).resolve().parents[2] / "config" / "profiles"
pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(240)]
PROJECT = Path(__file__).resolve().parents[2]

box = box_fixture("fail")


@on_database("sqlite")
async def test_zstack_error_fails_the_step_and_retry_completes_the_lab(box, database_url: str, tmp_path: Path):
    async with lab_world(box, database_url, tmp_path) as world:
        world.sim.faults.set(fail_rate=1.0, methods=frozenset({"POST"}))
        view = await world.service.create(OWNER, name="flaky")
        await world.runtime.engine.wait_idle(view.id, timeout=60)
        lab = await world.lab_row("flaky")
        assert (lab.state, lab.failed_step) == (LabState.FAILED, "create_vms")
        assert "SYS.1006" in (lab.error or ""), lab.error
        steps = await world.steps(lab.id)
        assert steps["create_vms"].state == StepState.FAILED and steps["create_vms"].attempt == 1  # not transient
        assert steps["prepare"].state == StepState.DONE and steps["attach_volume"].state == StepState.PENDING
        assert world.outer_vms(lab.uuid) == []  # a failed create made nothing
        assert NoticeKind.FAILED in world.notices.kinds("flaky")

        world.sim.faults.clear()
        retried = await world.service.retry(OWNER, "flaky")
        assert retried.state == LabState.PROVISIONING
        await world.runtime.engine.wait_idle(view.id, timeout=120)
        lab = await world.lab_row("flaky")
        assert lab.state == LabState.READY and lab.failed_step is None and lab.error is None
        steps = await world.steps(lab.id)
        assert steps["prepare"].attempt == 1 and steps["create_vms"].attempt == 2  # resumed, not restarted
        assert len(world.outer_vms(lab.uuid)) == 2

        await world.service.destroy(OWNER, "flaky")
        await world.runtime.engine.wait_idle(view.id, timeout=60)
        assert world.outer_vms(lab.uuid) == [] and await world.machine_leftovers(lab) == []


@on_database("postgres")
async def test_a_failed_image_download_fails_its_step_with_zstacks_reason(box, database_url: str, tmp_path: Path):
    # The image and the network are made at once; the step still fails with the one error, as every step does.
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    profile = (PROFILES / "sandbox.yaml").read_text()
    assert "    file: build/sandbox/nested-cirros.qcow2\n" in profile
    (profiles / "sandbox.yaml").write_text(profile.replace(
        "    file: build/sandbox/nested-cirros.qcow2\n", "    url: http://{vm1_vpc_ip}:9/gone.qcow2\n"))
    async with lab_world(box, database_url, tmp_path, profiles_dir=profiles) as world:
        view = await world.service.create(OWNER, name="noimage")
        await world.runtime.engine.wait_idle(view.id, timeout=120)
        lab = await world.lab_row("noimage")
        assert (lab.state, lab.failed_step) == (LabState.FAILED, "nested_network_image"), lab.error
        assert "download" in (lab.error or "") and "TaskGroup" not in (lab.error or ""), lab.error
        assert "image" not in lab.nested_ids

        await world.service.destroy(OWNER, "noimage")
        await world.runtime.engine.wait_idle(view.id, timeout=60)
        assert world.outer_vms(lab.uuid) == [] and await world.machine_leftovers(lab) == []


@contextlib.asynccontextmanager
async def refused_route(ip: str) -> AsyncIterator[None]:
    """New connections from this host to ``ip`` fail at once (the route is removed afterwards, whatever happens)."""
    await system.ip("route", "add", "unreachable", f"{ip}/32")
    try:
        yield
    finally:
        await system.ip("route", "del", "unreachable", f"{ip}/32", check=False)


async def test_ssh_refused_fails_the_lab_and_destroying_it_leaves_nothing(box: SandboxBox, database_url: str,
                                                                          tmp_path: Path):
    blocked = asyncio.Event()
    routes = contextlib.AsyncExitStack()

    async def cut_vm1(lab_id: int, step: str) -> None:
        if step != "wait_ssh":
            return
        lab = await world.lab_row("cut")
        await routes.enter_async_context(refused_route(lab.vm1_public_ip or ""))
        await drop_connections(SimpleNamespace(config=box.config), SimpleNamespace(vm_uuid=lab.vm1_uuid))
        blocked.set()

    async with routes, lab_world(box, database_url, tmp_path, after_step=cut_vm1) as world:
        view = await world.service.create(OWNER, name="cut")
        await world.runtime.engine.wait_idle(view.id, timeout=60)
        assert blocked.is_set()
        lab = await world.lab_row("cut")
        assert lab.state == LabState.FAILED and lab.failed_step in {"iscsi_target", "install_zstack"}, lab.failed_step
        assert "cannot connect to vm1" in (lab.error or "") and lab.vm1_public_ip in (lab.error or ""), lab.error
        steps = await world.steps(lab.id)
        assert steps[lab.failed_step].error == lab.error
        assert "FAILED: cannot connect to vm1" in (steps[lab.failed_step].output_tail or "")

        await routes.aclose()  # the destroy talks to the platform only; the route goes either way
        await world.service.destroy(OWNER, "cut")
        await world.runtime.engine.wait_idle(view.id, timeout=60)
        assert (await world.lab_row("cut")).state == LabState.DESTROYED
        assert world.outer_vms(lab.uuid) == [] and world.outer_volumes(lab.uuid) == []
        assert await world.machine_leftovers(lab) == [] and await world.host_keys(lab.uuid) == {}


async def test_vm2_refusing_root_password_fails_wait_ssh_with_what_to_change(
    box: SandboxBox, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # An image whose cloud-init keeps `PasswordAuthentication no` (RHEL cloud.cfg: ssh_pwauth 0): labbot must
    # notice before the install, not an hour later when the nested AddKVMHost logs in with the password.
    monkeypatch.setattr(steps_module, "VM2_USERDATA", "#cloud-config\nssh_pwauth: false\n")
    async with lab_world(box, database_url, tmp_path) as world:
        view = await world.service.create(OWNER, name="nopw")
        await world.runtime.engine.wait_idle(view.id, timeout=60)
        lab = await world.lab_row("nopw")
        assert (lab.state, lab.failed_step) == (LabState.FAILED, "wait_ssh"), (lab.failed_step, lab.error)
        assert "refuses SSH login with root's password" in (lab.error or "") and "ssh_pwauth" in (lab.error or "")
        steps = await world.steps(lab.id)
        assert steps["install_zstack"].state == StepState.PENDING  # nothing was installed on a VM2 that cannot work
        root_password = SecretBox(world.settings.secret_key).decrypt(lab.host_password_enc or "").get_secret_value()
        assert root_password not in (lab.error or "")
        await world.service.destroy(OWNER, "nopw")
        await world.runtime.engine.wait_idle(view.id, timeout=60)
        assert world.outer_vms(lab.uuid) == []


@on_database("postgres")
async def test_retry_after_a_failed_install_cleans_vm2_up_and_installs_again(box: SandboxBox, database_url: str,
                                                                             tmp_path: Path):
    # The first install dies half-way (after /usr/local/zstack and the database exist), as a real one can. The
    # installer then refuses the host; `/lab retry` must clean up as a person would and re-run, saying so.
    async def fail_first_install(lab_id: int, step: str) -> None:
        if step == "wait_ssh":
            async with world.lab_ssh(await world.lab_row("halfway")) as ssh:
                await ssh.run("vm2", "touch /etc/labbot-sandbox-install-fail", timeout=30)

    async with lab_world(box, database_url, tmp_path, after_step=fail_first_install) as world:
        view = await world.service.create(OWNER, name="halfway")
        await world.runtime.engine.wait_idle(view.id, timeout=90)
        lab = await world.lab_row("halfway")
        assert (lab.state, lab.failed_step) == (LabState.FAILED, "install_zstack"), (lab.failed_step, lab.error)
        assert "exited with status 1" in (lab.error or "")

        await world.service.retry(OWNER, "halfway")
        await world.runtime.engine.wait_idle(view.id, timeout=120)
        lab = await world.lab_row("halfway")
        assert lab.state == LabState.READY, (lab.failed_step, lab.error)
        notes = [n.text for n in world.notices.notices if n.kind == NoticeKind.STEP_NOTE and n.lab.name == "halfway"]
        assert len(notes) == 1 and "exited with status 1" in notes[0] and "removed /usr/local/zstack" in notes[0]
        assert "-E -D" in notes[0]
        assert any(e.kind == "step_note" for e in await world.events(lab.id))
        steps = await world.steps(lab.id)
        assert steps["install_zstack"].attempt == 2 and "Management node is running" in (
            steps["install_zstack"].output_tail or "")
        async with world.lab_ssh(lab) as ssh:
            count = await ssh.run("vm2", "pgrep -c -f 'bot.cli sim zstack --role nested'", timeout=10)
        assert count.stdout.strip() == "1"

        await world.service.destroy(OWNER, "halfway")
        await world.runtime.engine.wait_idle(view.id, timeout=60)
        assert world.outer_vms(lab.uuid) == [] and await world.machine_leftovers(lab) == []


async def test_a_missing_nested_image_file_fails_prepare_naming_the_file(box: SandboxBox, database_url: str,
                                                                         tmp_path: Path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (PROJECT / "config" / "profiles" / "sandbox.yaml").read_text()
    (profiles / "sandbox.yaml").write_text(text.replace("build/sandbox/nested-cirros.qcow2", "/nonexistent/cirros.img"))
    async with lab_world(box, database_url, tmp_path, profiles_dir=profiles) as world:
        view = await world.service.create(OWNER, name="noimage")
        await world.runtime.engine.wait_idle(view.id, timeout=60)
        lab = await world.lab_row("noimage")
        assert (lab.state, lab.failed_step) == (LabState.FAILED, "prepare"), (lab.failed_step, lab.error)
        assert "the nested image file /nonexistent/cirros.img does not exist" in (lab.error or "")
        assert world.outer_vms(lab.uuid) == []  # nothing made on the platform for a lab that cannot finish
