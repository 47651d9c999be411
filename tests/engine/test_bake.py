"""Baked VM2 in the lab-in-a-box, for real: `labbot bake` builds a lab up to the install, images its VM2 (the VM's
files, copied by the outer simulator's CreateRootVolumeTemplateFromRootVolume) and destroys the lab; a profile
with `install: {mode: baked}` then builds a lab whose VM2 never runs the installer, gets its own identity
(management IP, machine-id, initiator name, SSH keys) and still reaches a nested VM Running on SharedBlock.
A lab whose nested ZStack holds resources is refused, and left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.profiles import InstallSpec
from services.iscsi.initiator import lab_initiator_name
from services.labs.build.bake import BAKED_TAG, VERSION_TAG, BakeRefusedError
from services.labs.models import LabState
from tests.conftest import on_database
from tests.engine.sandbox_lab import OWNER, box_fixture, lab_world

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(900)]

box = box_fixture("bake")

PROPERTIES = "/usr/local/zstack/apache-tomcat/webapps/zstack/WEB-INF/classes/zstack.properties"
ELSEWHERE = "198.19.8.250"  # a management IP no VM2 of this box has: the image as if baked on another network


@on_database("sqlite")
async def test_a_baked_image_builds_a_lab_without_the_installer(box, database_url: str, tmp_path: Path) -> None:
    async with lab_world(box, database_url, tmp_path) as world:
        rt = world.runtime
        said: list[str] = []

        async def progress(line: str) -> None:
            said.append(line)

        baked = await rt.baking.bake(profile="sandbox", from_lab=None, image_name="t-vm2-baked", progress=progress)
        assert baked.name == "t-vm2-baked" and baked.zstack_version and baked.size_bytes > 0
        image = world.sim.state.get("image", baked.uuid)
        assert image is not None and image["status"] == "Ready" and image["mediaType"] == "RootVolumeTemplate"
        tags = world.sim.state.tags_of(baked.uuid, "User")
        assert BAKED_TAG in tags and f"{VERSION_TAG}{baked.zstack_version}" in tags
        source = await world.lab_row(baked.source_lab)
        assert source.state == LabState.DESTROYED and not world.outer_vms(source.uuid)
        assert "baked" in [e.kind for e in await world.events(source.id)]
        assert any("back as it was" in line for line in said)

        # The image's files as if its VM2 had had another address: the build must move ZStack to the new one.
        copied = box.config.image_dir(baked.uuid) / "layers" / "usr-local" / "upper" / PROPERTIES.removeprefix(
            "/usr/local/")
        text = copied.read_text()
        assert "management.server.ip" in text
        copied.write_text("".join(
            f"management.server.ip = {ELSEWHERE}\n" if line.startswith("management.server.ip") else line + "\n"
            for line in text.splitlines()))

        recipe = rt.profiles["sandbox"]
        rt.profiles["sandbox-baked"] = recipe.model_copy(update={
            "name": "sandbox-baked", "vm2": recipe.vm2.model_copy(update={"image": baked.name}),
            "install": InstallSpec(mode="baked", timeout_minutes=10),
        })
        await world.service.create(OWNER, name="bk", profile="sandbox-baked")
        lab = await world.wait_state("bk", {LabState.READY, LabState.FAILED}, timeout=300)
        assert lab.state == LabState.READY, (lab.failed_step, lab.error)
        output = (await world.steps(lab.id))["install_zstack"].output_tail or ""
        assert "baked image, no installer" in output and "installer: /opt" not in output
        assert f"management.server.ip {ELSEWHERE} -> {lab.vm2_ip}" in output
        counts = await world.nested_counts(lab)
        assert counts["vm"] == 1 and counts["primary_storage"] == 1 and counts["host"] == 1
        async with world.nested(lab) as nested:
            vm = (await nested.query("QueryVmInstance"))[0]
            storage = (await nested.query("QueryPrimaryStorage"))[0]
        assert vm["state"] == "Running" and storage["type"] == "SharedBlock"

        async with world.lab_ssh(lab) as ssh:
            jobs = await ssh.run("vm2", "ls /var/tmp/labbot 2>/dev/null; true", timeout=30)
            assert "install-zstack" not in jobs.stdout and jobs.stdout.strip() == ""
            props = await ssh.run("vm2", f"cat {PROPERTIES}", timeout=30)
            assert f"management.server.ip = {lab.vm2_ip}" in props.stdout
            assert f"CloudBus.serverIp.0 = {lab.vm2_ip}" in props.stdout
            initiator = await ssh.run("vm2", "cat /etc/iscsi/initiatorname.iscsi", timeout=30)
            assert initiator.stdout.strip() == "InitiatorName=" + lab_initiator_name(
                recipe.iscsi.iqn_prefix, "bk")
            machine_id = await ssh.run("vm2", "cat /etc/machine-id", timeout=30)
            assert len(machine_id.stdout.strip()) == 32
            keys = await ssh.run("vm2", "cat /root/.ssh/authorized_keys", timeout=30)
            assert keys.stdout.strip() == (lab.ssh_public_key or "").strip()

            # As the real zstack-ctl: a management IP that is not on the machine stops the start.
            moved = await ssh.run(
                "vm2",
                f"zstack-ctl stop >/dev/null; sed -i 's/^management.server.ip = .*/management.server.ip = {ELSEWHERE}/'"
                f" {PROPERTIES}; zstack-ctl start",
                timeout=120, check=False)
            assert moved.exit_status != 0
            assert f"management.server.ip[{ELSEWHERE}] is not found on any device" in moved.stderr
            fixed = await ssh.run("vm2", f"zstack-ctl change_ip --ip={lab.vm2_ip} && zstack-ctl start",
                                  timeout=120, check=False)
            assert fixed.exit_status == 0, fixed.stderr

        await world.service.destroy(OWNER, "bk")
        await rt.engine.wait_idle(timeout=300)
        assert not world.outer_vms(lab.uuid) and not await world.machine_leftovers(lab)
        await rt.outer.call("DeleteImage", {"uuid": baked.uuid})
        await rt.outer.call("ExpungeImage", {"imageUuid": baked.uuid})
        assert not box.config.image_dir(baked.uuid).exists()


@on_database("postgres")
async def test_a_lab_whose_nested_zstack_holds_resources_is_not_baked(box, database_url: str, tmp_path: Path) -> None:
    async with lab_world(box, database_url, tmp_path) as world:
        await world.service.create(OWNER, name="full")
        lab = await world.wait_state("full", {LabState.READY, LabState.FAILED}, timeout=300)
        assert lab.state == LabState.READY, (lab.failed_step, lab.error)
        images_before = len(world.sim.state.list("image"))

        async def progress(line: str) -> None:
            raise AssertionError(f"nothing may start: {line}")

        with pytest.raises(BakeRefusedError, match="already holds 1 zone, 1 host, 1 primary storage"):
            await world.runtime.baking.bake(profile=None, from_lab="full", image_name=None, progress=progress)
        assert len(world.sim.state.list("image")) == images_before
        assert [vm["state"] for vm in world.outer_vms(lab.uuid)] == ["Running", "Running"]
        async with world.nested(lab) as nested:  # the lab's own admin password still works
            assert await nested.count("QueryVmInstance") == 1
        await world.runtime.engine.wait_idle(lab.id, timeout=30)  # the hold's kick: nothing to do on a ready lab
        row = await world.lab_row("full")
        assert row.lease_owner is None and "baked" not in [e.kind for e in await world.events(lab.id)]
        await world.service.destroy(OWNER, "full")
        await world.runtime.engine.wait_idle(timeout=300)


def test_the_cli_refuses_an_unmigrated_database_before_building_anything(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABBOT_", "SLACK_"))}
    env.update({"LABBOT_PLATFORM_URL": "http://127.0.0.1:9/zstack/v1", "LABBOT_PLATFORM_PASSWORD": "pw",
                "LABBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
                "LABBOT_STATE_DIR": str(tmp_path), "LABBOT_SECRET_KEY": "bake-test-key-0123456789abcdef-0123"})
    done = subprocess.run([sys.executable, "-m", "bot.cli", "bake", "--profile", "sandbox"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "bake failed: the database is at an empty database" in done.stderr
    assert "labbot db upgrade" in done.stderr and "Traceback" not in done.stderr
