"""A lab's picture and packet captures reach its thread through Slack's upload flow, over signed HTTP.

The bot runs for real (Bolt over HTTP, the notifier's outbox, the fake Slack's files.getUploadURLExternal, the
upload URL and files.completeUploadExternal, which check what they are sent); the capture service is the real
one with only its SSH side replaced by a capture made with scapy, so the summary counts real decoded PDUs.
"""

from __future__ import annotations

import json
from pathlib import Path

from config.profiles import LabProfile
from services.capture.remote import RemoteCapture
from services.capture.service import CaptureService
from services.capture.spec import CaptureSpec
from services.crypto import SecretBox
from services.labs.models import Lab
from services.ssh import MemoryHostKeyStore
from tests.capture import pcapgen as g
from tests.slack.harness import Harness, running_bot
from tests.slack.world import PROFILES, Sessions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _capture_bytes(tmp_path: Path) -> bytes:
    conversation = (
        g.Conversation("198.19.0.11", "198.19.0.10", 40100, 3260).open()
        .send(True, bytes(g.login_request())).send(False, bytes(g.login_response()))
        .send(True, bytes(g.text_request())).send(False, bytes(g.text_response()))
        .send(True, bytes(g.scsi_command(g.INQUIRY)) + bytes(g.scsi_command(g.REPORT_LUNS)))
    )
    return g.write(tmp_path / "made.pcap", conversation).read_bytes()


class RecordedRemote:
    """The SSH side of a capture: what it was asked, and a real pcap as its answer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked: list[tuple[str, CaptureSpec, str, tuple[str, str, int] | None]] = []

    async def __call__(self, row: Lab, profile: LabProfile, spec: CaptureSpec, job: str, bpf: str,
                       exercise: tuple[str, str, int] | None) -> RemoteCapture:
        self.asked.append((row.name, spec, bpf, exercise))
        return RemoteCapture(data=self.data, tcpdump_log="listening on any", exercised="a test's traffic",
                             hit_byte_limit=False)


def _with_captures(h: Harness, sessions: Sessions, remote: RecordedRemote) -> CaptureService:
    settings = h.world.settings
    captures = CaptureService(sessions=sessions, settings=settings, profiles=PROFILES,
                              box=SecretBox(settings.secret_key), host_keys=MemoryHostKeyStore(),
                              notifier=h.world.fanout, remote=remote)
    h.world.service.capture_runner = captures.capture
    h.world.fanout.add(captures)
    return captures


def _thread_texts(h: Harness, ts: str) -> list[str]:
    return [m.text + json.dumps(m.blocks) for m in h.fake.thread("C_LABS", ts)]


async def test_picture_and_capture_go_to_the_labs_thread(sessions: Sessions, tmp_path: Path) -> None:
    remote = RecordedRemote(_capture_bytes(tmp_path))
    async with running_bot(sessions, overrides={"state_dir": tmp_path / "state"}) as h:
        captures = _with_captures(h, sessions, remote)
        assert (await h.command("create pic", hook="create")).status_code == 200
        await h.settle()
        [card] = h.fake.top_level("C_LABS")

        # Ready: the build report, then the picture as a PNG shared in the card's thread.
        [picture] = h.fake.shared_files("C_LABS", card.ts)
        assert picture.filename == "pic-picture.png" and picture.data is not None
        assert picture.data.startswith(PNG_MAGIC) and len(picture.data) == picture.length > 10_000
        assert picture.alt_txt and "iqn.2026-11.io.labbot:lab" in picture.alt_txt
        thread = h.fake.thread("C_LABS", card.ts)
        assert thread[-1].files == [picture.id] and "picture of lab *pic*" in thread[-1].text
        uploads = [c.method for c in h.fake.calls if c.method.startswith("files.") or c.method == "upload"]
        assert uploads == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]

        # /lab picture posts it again, in the thread; the person who asked is told where it is.
        await h.command("picture pic", hook="again")
        await h.settle()
        assert len(h.fake.shared_files("C_LABS", card.ts)) == 2
        assert "in its thread" in json.dumps(h.fake.hook_bodies("again"))

        # Someone else may not capture the owner's lab: told why, nothing captured, nothing posted.
        await h.command("capture pic", user="U_BOB", hook="bob")
        await h.settle()
        assert "only <@U_ALICE>" in json.dumps(h.fake.hook_bodies("bob")) and remote.asked == []
        assert len(h.fake.shared_files("C_LABS", card.ts)) == 2

        # The owner's capture: the summary (decoded from the pcap), then the pcap itself, in the thread.
        await h.command("capture pic iscsi --seconds 3 --packets 50 --exercise-io", hook="cap")
        await h.settle()
        [(name, spec, bpf, exercise)] = remote.asked
        assert (name, spec.flows, spec.seconds, spec.packets, spec.exercise_io) == ("pic", "iscsi", 3, 50, True)
        assert bpf == "tcp port 3260" and exercise == ("198.19.0.10:3260", "iqn.2026-11.io.labbot:lab", 1)
        pcap = h.fake.shared_files("C_LABS", card.ts)[-1]
        assert pcap.filename.startswith("pic-iscsi-") and pcap.filename.endswith(".pcap")
        assert pcap.data == remote.data
        summary = _thread_texts(h, card.ts)[-2]
        for expected in ("Packet capture of lab pic", "Login Request", "Text Request", "SCSI Command",
                         "INQUIRY", "REPORT LUNS", "SendTargets discoveries: 1", "VM2 initiator 198.19.0.11"):
            assert expected in summary, expected
        lab = await h.world.service.status("pic")
        assert [p.name for p in captures.captures_of(lab.uuid)] == [pcap.filename]
        assert not h.fake.rate_limited and h.fake.violations == 0

        # Destroyed with the lab.
        await h.command("destroy pic --yes", hook="destroy")
        await h.settle()
        assert captures.captures_of(lab.uuid) == []
