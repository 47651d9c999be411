"""``/lab capture``: a bounded packet capture on a ready lab's VM1, kept with the lab and shown in its thread.

The service runs the capture (``services.capture.remote``), keeps the pcap under the state directory (at most
``KEEP_PER_LAB`` per lab, each at most ``MAX_BYTES``), summarises it (``services.capture.analysis``, in a thread:
decoding is CPU work) and announces it as a ``CAPTURED`` notice, which front ends show in the lab's thread and
nowhere else. It is also a notifier: when a lab is destroyed, its captures are deleted.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.profiles import LabProfile
from config.settings import Settings
from services import shell
from services.capture.analysis import CaptureFormatError, CaptureSummary, analyse_pcap
from services.capture.remote import CaptureRemoteError, RemoteCapture, bpf_filter, capture_on_vm1
from services.capture.spec import KEEP_PER_LAB, CaptureSpec
from services.crypto import SecretBox
from services.db import utcnow
from services.errors import ConflictError
from services.files import private_dir, private_file
from services.i18n import N_, Texts
from services.labs import repository as repo
from services.labs.build.connections import LabConnections
from services.labs.build.context import chap_credentials
from services.labs.models import Lab
from services.labs.notifier import Notice, NoticeKind, Notifier
from services.labs.picture import build_picture
from services.labs.views import LabView, lab_view
from services.ssh.hostkeys import HostKeyStore

log = logging.getLogger(__name__)

# Every user-facing string of this module (one place, for the message catalogue).
TEXT = Texts({
    "busy": N_("a capture of lab `{name}` is already running; wait for it to finish"),
    "not_ready": N_("lab `{name}` is {state}; captures run on ready labs"),
    "no_iscsi": N_("lab `{name}` has no iSCSI target recorded, so there is no iSCSI traffic to make"),
    "empty": N_("the capture of lab `{name}` came back empty: {reason}"),
})
_DEFAULT_LUN = {"tgt": 1, "targetcli": 0}

# The lab's VMs as a capture sees them: (lab record, profile, spec, job name, BPF filter, exercise) → the pcap.
RemoteRunner = Callable[[Lab, LabProfile, CaptureSpec, str, str, "tuple[str, str, int] | None"],
                        Awaitable[RemoteCapture]]


@dataclass(frozen=True)
class CaptureReport:
    """One finished capture: where its pcap is kept, and what it shows."""

    lab: LabView
    spec: CaptureSpec
    path: Path
    size: int
    started_at: datetime
    summary: CaptureSummary
    exercised: str | None
    hit_byte_limit: bool

    @property
    def filename(self) -> str:
        """The pcap's name as people get it."""
        return self.path.name


class CaptureService:
    """Runs captures on labs' VM1 and keeps their files, bounded, until the lab is gone."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 profiles: dict[str, LabProfile], box: SecretBox, host_keys: HostKeyStore, notifier: Notifier,
                 remote: RemoteRunner | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        """``remote`` replaces the SSH side (tests of the front ends); everything else stays real."""
        self.sessions = sessions
        self.settings = settings
        self.profiles = profiles
        self.box = box
        self.host_keys = host_keys
        self.notifier = notifier
        self.clock = clock
        self.remote = remote or self._over_ssh
        self._running: set[int] = set()

    @property
    def root(self) -> Path:
        """Where captures are kept: one directory per lab uuid."""
        return Path(self.settings.state_dir) / "captures"

    async def capture(self, lab: LabView, spec: CaptureSpec, actor: str) -> CaptureReport:
        """Capture on ``lab`` (the caller checked who may), keep the pcap, announce it; one at a time per lab."""
        if lab.state not in ("ready", "expiring"):
            raise ConflictError(TEXT["not_ready"].format(name=lab.name, state=lab.state))
        if lab.id in self._running:
            raise ConflictError(TEXT["busy"].format(name=lab.name))
        self._running.add(lab.id)
        try:
            report = await self._capture(lab, spec)
        finally:
            self._running.discard(lab.id)
        await self.notifier.notify(Notice(NoticeKind.CAPTURED, report.lab, actor=actor,
                                          details={"capture": report}))
        return report

    async def _capture(self, lab: LabView, spec: CaptureSpec) -> CaptureReport:
        profile = self.profiles[lab.profile]
        async with self.sessions() as session:
            row = await repo.get(session=session, lab_id=lab.id)
            steps = await repo.list_steps(session=session, lab_id=lab.id)
            picture = build_picture(row, profile, steps)
        if not (row.vm1_public_ip and row.vm2_ip and row.vm1_vpc_ip):
            raise ConflictError(TEXT["not_ready"].format(name=lab.name, state=lab.state))
        exercise = None
        if spec.exercise_io:
            if not (row.iscsi_iqn and picture.portal):
                raise ConflictError(TEXT["no_iscsi"].format(name=lab.name))
            lun = picture.iscsi_lun if picture.iscsi_lun is not None else _DEFAULT_LUN[profile.iscsi.backend]
            exercise = (picture.portal, row.iscsi_iqn, lun)
        started = self.clock()
        job = f"capture-{started:%Y%m%d-%H%M%S}"
        bpf = bpf_filter(spec, vm2_ip=row.vm2_ip, iscsi_port=profile.iscsi.port, ui_port=profile.install.ui_port,
                         api_port=profile.install.api_port)
        remote = await self.remote(row, profile, spec, job, bpf, exercise)
        path = self._store(row.uuid, lab.name, spec, started, remote.data)
        try:
            summary = await asyncio.to_thread(
                analyse_pcap, path, vm1_ip=row.vm1_vpc_ip, vm2_ip=row.vm2_ip, iscsi_port=profile.iscsi.port,
                ui_port=profile.install.ui_port, api_port=profile.install.api_port)
        except CaptureFormatError as err:
            path.unlink(missing_ok=True)
            raise CaptureRemoteError(TEXT["empty"].format(name=lab.name, reason=err)) from None
        return CaptureReport(lab=lab_view(row), spec=spec, path=path, size=len(remote.data), started_at=started,
                             summary=summary, exercised=remote.exercised, hit_byte_limit=remote.hit_byte_limit)

    async def _over_ssh(self, row: Lab, profile: LabProfile, spec: CaptureSpec, job: str, bpf: str,
                        exercise: tuple[str, str, int] | None) -> RemoteCapture:
        """The capture on the lab's VM1 (and traffic from VM2), over the lab's own SSH key."""
        if not (row.ssh_private_key_enc and row.vm1_public_ip):
            raise ConflictError(TEXT["not_ready"].format(name=row.name, state=row.state))
        connections = LabConnections(lab_uuid=row.uuid, settings=self.settings, host_keys=self.host_keys)
        try:
            ssh = await connections.ssh(vm1=row.vm1_public_ip, vm1_port=profile.vm1.ssh_port, vm2=row.vm2_ip,
                                        vm2_port=profile.vm2.ssh_port,
                                        private_key=self.box.decrypt(row.ssh_private_key_enc))
            chap = chap_credentials(row, profile, self.box)
            return await capture_on_vm1(ssh, spec, job=job, bpf=bpf, exercise=exercise, chap=chap)
        finally:
            await connections.close()

    def _store(self, lab_uuid: str, name: str, spec: CaptureSpec, started: datetime, data: bytes) -> Path:
        """Keep the pcap with the lab's others, dropping the oldest beyond ``KEEP_PER_LAB``."""
        private_dir(Path(self.settings.state_dir))  # the state directory is labbot's alone
        directory = private_dir(self.root / shell.identifier(lab_uuid))
        path = directory / f"{shell.identifier(name)}-{spec.flows}-{started:%Y%m%d-%H%M%S}.pcap"
        private_file(path).write_bytes(data[: spec.max_bytes])
        kept = sorted(directory.glob("*.pcap"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-KEEP_PER_LAB]:
            old.unlink(missing_ok=True)
        return path

    def captures_of(self, lab_uuid: str) -> list[Path]:
        """The captures kept for one lab, oldest first."""
        directory = self.root / shell.identifier(lab_uuid)
        return sorted(directory.glob("*.pcap"), key=lambda p: p.stat().st_mtime) if directory.is_dir() else []

    async def notify(self, notice: Notice) -> None:
        """A destroyed lab's captures go with it."""
        if notice.kind == NoticeKind.DESTROYED:
            directory = self.root / shell.identifier(notice.lab.uuid)
            if directory.exists():
                await asyncio.to_thread(shutil.rmtree, directory, True)
                log.info("removed the captures of lab %s", notice.lab.name)
