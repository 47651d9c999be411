"""End to end in the lab-in-a-box: `/lab create` → ready, checked on the machine itself; destroy → nothing left.

What is checked comes from the world, not from labbot's database: VM2's own initiator discovers VM1's target
across the VPC (a real libiscsi discovery run on VM2), the nested ZStack (asked through VM1) stores its
SharedBlock group on exactly that LUN's wwid and runs the nested VM on it, and after destroy the outer
simulator and this machine hold nothing of the lab.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.images import NESTED_IMAGE
from services.crypto import SecretBox
from services.labs.build.steps import TITLES
from services.labs.models import LabState, StepState
from services.labs.notifier import NoticeKind
from tests.engine.sandbox_lab import OWNER, box_fixture, lab_world
from tests.sandbox.labbox import python_on

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(240)]

box = box_fixture("e2e")

DISCOVER_ON_VM2 = """
import asyncio, json
from sandbox.discovery import discover, local_initiator_name
found = asyncio.run(discover({ip!r}, 3260, initiator=local_initiator_name(), chap={chap!r}))
print(json.dumps([{{"iqn": t.iqn, "luns": [[l.lun_id, l.wwid, l.size] for l in t.luns]}} for t in found]))
"""


async def test_create_ready_verified_for_real_then_destroy_leaves_nothing(box, database_url: str, tmp_path: Path):
    async with lab_world(box, database_url, tmp_path, health_on_demand_interval_seconds=0) as world:
        view = await world.service.create(OWNER, name="e2e")
        await world.runtime.engine.wait_idle(view.id, timeout=120)
        lab = await world.lab_row("e2e")
        assert lab.state == LabState.READY, (lab.failed_step, lab.error)

        # The record: every step done (a transient retry on a loaded machine is allowed), addresses and iSCSI
        # identity known, health ok.
        steps = await world.steps(lab.id)
        assert set(steps) == set(TITLES)
        assert all(s.state == StepState.DONE and s.attempt >= 1 for s in steps.values()), {
            n: (s.state, s.attempt) for n, s in steps.items()}
        assert lab.health == "ok" and lab.health_failing == []
        assert lab.iscsi_iqn and lab.iscsi_iqn.endswith(":e2e") and lab.iscsi_size_bytes == 50 * 1024**3
        assert "LUN" in (steps["iscsi_target"].output_tail or "")
        assert set(lab.nested_ids) >= {"zone", "cluster", "host", "iscsi_server", "primary_storage", "vm"}
        kinds = world.notices.kinds("e2e")
        assert kinds[0] == NoticeKind.CREATED and kinds[-1] == NoticeKind.READY
        assert kinds.count(NoticeKind.STEP_FINISHED) == len(TITLES)

        # The outer platform: exactly VM1 and VM2 Running and one data volume attached to VM1.
        vms = world.outer_vms(lab.uuid)
        assert sorted(v["uuid"] for v in vms) == sorted([lab.vm1_uuid, lab.vm2_uuid])
        assert all(v["state"] == "Running" for v in vms)
        volumes = world.outer_volumes(lab.uuid)
        assert [(v["uuid"], v["vmInstanceUuid"]) for v in volumes] == [(lab.volume_uuid, lab.vm1_uuid)]

        async with world.lab_ssh(lab) as ssh:
            # VM2 cannot reach the host's side directly, yet discovers VM1's target through the VPC.
            # The target requires the lab's CHAP login (the nested iSCSI server was given it too).
            chap = (f"labbot-{lab.uuid[:16]}", SecretBox(world.settings.secret_key).decrypt(lab.chap_secret_enc or "")
                    .get_secret_value())
            found = await python_on(ssh, "vm2", DISCOVER_ON_VM2.format(ip=lab.vm1_vpc_ip, chap=chap))
            assert [t["iqn"] for t in found] == [lab.iscsi_iqn]
            assert found[0]["luns"] == [[1, lab.iscsi_wwid, 50 * 1024**3]]
            wwid = found[0]["luns"][0][1]

        async with world.nested(lab) as nested:
            groups = await nested.query("QuerySharedBlockGroupPrimaryStorage")
            assert [g["uuid"] for g in groups] == [lab.nested_ids["primary_storage"]]
            disks = await nested.query("QuerySharedBlock")
            assert [(d["diskUuid"], d["sharedBlockGroupUuid"]) for d in disks] == [(wwid, groups[0]["uuid"])]
            vms = await nested.query("QueryVmInstance")
            assert [(v["uuid"], v["state"]) for v in vms] == [(lab.nested_ids["vm"], "Running")]
            root = [v for v in vms[0]["allVolumes"] if v["type"] == "Root"]
            assert [v["primaryStorageUuid"] for v in root] == [groups[0]["uuid"]]
            hosts = await nested.query("QueryHost")
            assert [(h["managementIp"], h["status"]) for h in hosts] == [(lab.vm2_ip, "Connected")]
            # The image was really downloaded from VM1: the nested ZStack knows the served file's own sizes.
            images = await nested.query("QueryImage")
            assert [(i["url"], i["status"], i["format"], i["actualSize"], i["size"]) for i in images] == [
                (f"http://{lab.vm1_vpc_ip}:8000/{NESTED_IMAGE.name}", "Ready", "qcow2", NESTED_IMAGE.stat().st_size,
                 117_440_512)]
        async with world.lab_ssh(lab) as ssh:  # served by a process that outlived labbot's SSH sessions
            served = await ssh.run("vm1", f"ss -ltn 'sport = :8000' | grep -c {lab.vm1_vpc_ip}:8000", timeout=15)
            assert served.stdout.strip() == "1"
        assert set(await world.host_keys(lab.uuid)) == {"vm1", "vm2"}

        # Health sees the LUN itself, not just the portal: with the LUN gone from the target, only that fails.
        report = await world.service.health(OWNER, "e2e")
        checks = {c.name: c for c in report.checks}
        assert report.healthy and checks["iscsi_lun"].detail == f"LUN 1 of {lab.iscsi_iqn} seen by VM2's initiator"
        async with world.lab_ssh(lab) as ssh:
            shown = await ssh.run("vm1", "tgtadm --lld iscsi --mode target --op show", timeout=15)
            tid = next(line.split()[1].rstrip(":") for line in shown.stdout.splitlines() if line.startswith("Target "))
            await ssh.run("vm1", f"tgtadm --lld iscsi --mode logicalunit --op delete --tid {int(tid)} --lun 1",
                          timeout=15)
        report = await world.service.health(OWNER, "e2e")
        assert report.failing == ["iscsi_lun"], report.checks
        assert "VM2 does not see a disk LUN" in {c.name: c for c in report.checks}["iscsi_lun"].detail
        assert (await world.lab_row("e2e")).health == "degraded"

        # Destroy: gone from the platform, from this machine, keys forgotten, the trail recorded.
        await world.service.destroy(OWNER, "e2e")
        await world.runtime.engine.wait_idle(lab.id, timeout=60)
        gone = await world.lab_row("e2e")
        assert gone.state == LabState.DESTROYED and gone.ssh_private_key_enc is None
        assert world.outer_vms(lab.uuid) == [] and world.outer_volumes(lab.uuid) == []
        assert await world.machine_leftovers(lab) == []
        assert await world.host_keys(lab.uuid) == {}
        assert "image server stopped (lab destroyed)" in ((await world.steps(lab.id))["serve_image"].output_tail or "")
        trail = [(e.actor, e.kind) for e in await world.events(lab.id)]
        assert trail[0] == (OWNER.user_id, "created")
        assert (OWNER.user_id, "state:destroying") in trail and trail[-1] == ("labbot", "state:destroyed")
        assert [k for _, k in trail if k.startswith("state:")] == [
            "state:provisioning", "state:ready", "state:destroying", "state:destroyed"]
