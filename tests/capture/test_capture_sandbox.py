"""`/lab capture` for real in the lab-in-a-box: tcpdump in VM1's namespaces sees tgtd serve VM2's libiscsi tools.

The lab is built by the real pipeline; the capture runs tcpdump as a detached job on VM1 with its limits, the
traffic comes from VM2's own initiator, and the summary is decoded from the fetched pcap. Nothing is left on VM1
afterwards, and the captures go with the lab.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.picture import render_png, text_tree
from services.capture.spec import CaptureSpec
from services.errors import PermissionDeniedError
from services.labs.models import LabState
from services.labs.notifier import NoticeKind
from services.labs.service import Actor
from services.ssh.detached import JOBS_ROOT
from tests.engine.sandbox_lab import OWNER, box_fixture, lab_world

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(240)]

box = box_fixture("cap")


async def test_capture_counts_the_real_iscsi_conversation(box, tmp_path: Path):
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}"
    async with lab_world(box, database_url, tmp_path) as world:
        view = await world.service.create(OWNER, name="cap")
        await world.runtime.engine.wait_idle(view.id, timeout=150)
        lab = await world.lab_row("cap")
        assert lab.state == LabState.READY, (lab.failed_step, lab.error)

        # The picture of the lab as built: its real addresses, IQN, LUN and wwid.
        picture = await world.service.picture_of(lab.id)
        assert (picture.vm1_vpc_ip, picture.vm2_ip, picture.iscsi_iqn) == (lab.vm1_vpc_ip, lab.vm2_ip, lab.iscsi_iqn)
        assert picture.iscsi_lun == 1 and picture.iscsi_wwid == lab.iscsi_wwid and picture.nested_vm
        assert render_png(picture).startswith(b"\x89PNG")
        assert any(lab.iscsi_wwid in line for line in text_tree(picture))

        with pytest.raises(PermissionDeniedError):
            await world.service.capture(Actor("U_SOMEONE_ELSE"), "cap", CaptureSpec())

        spec = CaptureSpec(flows="iscsi", seconds=8, packets=600, exercise_io=True)
        report = await world.service.capture(OWNER, "cap", spec)
        summary = report.summary
        pdus, scsi = summary.iscsi.pdus, summary.iscsi.scsi
        # iscsi-ls (discovery + a normal session), iscsi-inq and iscsi-readcapacity16: each logs in.
        assert pdus["Login Request"] >= 3 and pdus["Login Response"] == pdus["Login Request"], pdus
        assert pdus["Text Request"] >= 1 and summary.iscsi.send_targets >= 1, pdus
        assert scsi["INQUIRY"] >= 1 and scsi["REPORT LUNS"] >= 1 and scsi["READ CAPACITY(16)"] >= 1, scsi
        assert pdus["SCSI Command"] == sum(scsi.values()) and pdus["SCSI Data-In"] >= 1, (pdus, scsi)
        flow = summary.flows["iscsi"]
        assert (flow.client, flow.server, flow.port) == (lab.vm2_ip, lab.vm1_vpc_ip, 3260)
        assert flow.connections >= 3 and 0 < flow.packets <= summary.packets <= spec.packets
        assert summary.iscsi.undecoded_connections == 0
        assert report.path.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
        assert report.size == report.path.stat().st_size <= spec.max_bytes
        assert [n.kind for n in world.notices.notices if n.kind == NoticeKind.CAPTURED] == [NoticeKind.CAPTURED]

        # Nothing of the capture is left running or stored on VM1.
        async with world.lab_ssh(lab) as ssh:
            jobs = await ssh.run("vm1", f"ls {JOBS_ROOT}/{lab.uuid}/ 2>/dev/null || true", timeout=15)
            assert not [j for j in jobs.stdout.split() if j.startswith("capture-")], jobs.stdout  # others' jobs stay
            running = await ssh.run("vm1", "pgrep -x tcpdump || true", timeout=15)
            assert running.stdout.strip() == "", running.stdout

        kept = world.runtime.captures.captures_of(lab.uuid)
        assert kept == [report.path]
        await world.service.destroy(OWNER, "cap")
        await world.runtime.engine.wait_idle(lab.id, timeout=60)
        assert world.runtime.captures.captures_of(lab.uuid) == [] and not report.path.exists()
