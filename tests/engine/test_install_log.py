"""The install step's log costs database writes per poll, not per line, and keeps a bounded tail.

A lab VM's owner decides what the installer prints: 5,000 empty lines used to be 5,000 transactions (16 s of
the event loop). The real step runs here against a real sshd on loopback (the detached job and its log are
real); statements are counted with a SQLAlchemy ``before_cursor_execute`` listener on the test's engine.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config.settings import load_settings
from services.crypto import SecretBox
from services.labs import repository as repo
from services.labs.build.context import LabContext
from services.labs.build.steps import TITLES, ExternalStepError, build_steps
from services.labs.notifier import RecordingNotifier
from services.labs.service import Actor, LabService
from services.ssh import LabSSH
from services.ssh.detached import JOBS_ROOT
from tests.reliability.driver import PROFILES
from tests.sandbox.labbox import require_sandbox
from tests.ssh.loopback_sshd import LoopbackSSHD

pytestmark = pytest.mark.sandbox

TAIL_CHARS = 4000  # what /lab logs keeps of a step's output


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSSHD]:
    require_sandbox()  # root and OpenSSH's sshd
    with LoopbackSSHD(tmp_path_factory.mktemp("install-vm")) as server:
        yield server


class LoopbackConnections:
    """The lab's connections, with SSH to the loopback sshd (the seam the steps reach VMs through)."""

    def __init__(self, ssh: LabSSH) -> None:
        self._ssh = ssh

    async def ssh(self, **_: Any) -> LabSSH:
        return self._ssh


async def run_install(sessions: async_sessionmaker[AsyncSession], vm: LoopbackSSHD, tmp_path: Path,
                      installer: str) -> tuple[int, float, str, str | None, BaseException]:
    """Run the real install step with ``installer`` as VM2's installer; statements, seconds, tail, progress, error."""
    script = tmp_path / "installer.sh"
    script.write_text(installer)
    base = PROFILES["sandbox"]
    install_spec = base.install.model_copy(update={"installer": str(script), "upload": False,
                                                   "command": "sh {installer}", "timeout_minutes": 5})
    profile = base.model_copy(update={"install": install_spec})
    settings = load_settings(default_profile="sandbox")
    service = LabService(sessions=sessions, settings=settings, profiles=PROFILES, notifier=RecordingNotifier())
    view = await service.create(Actor("U1"), name="logs")
    lab_key = f"installlog{os.getpid()}{time.monotonic_ns() % 10**6}"
    box = SecretBox(settings.secret_key)
    async with vm.ssh(lab_key) as ssh:
        ctx = LabContext(lab_id=view.id, lab_uuid=view.uuid, lab_name=view.name, profile=profile, settings=settings,
                         sessions=sessions, notifier=RecordingNotifier(), box=box,
                         connections=LoopbackConnections(ssh), titles=TITLES)
        await ctx.update(vm1_public_ip="127.0.0.1", ssh_private_key_enc=box.encrypt(vm.key.private_openssh))
        async with sessions() as session, session.begin():
            await repo.ensure_steps(session=session, lab_id=view.id, names=list(TITLES))
        install = next(step for step in build_steps(ctx, outer=None, health=None) if step.name == "install_zstack")  # type: ignore[arg-type]

        engine: AsyncEngine = sessions.kw["bind"]
        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        started = time.monotonic()
        try:
            with pytest.raises(ExternalStepError) as caught:
                await install.run()
        finally:
            elapsed = time.monotonic() - started
            event.remove(engine.sync_engine, "before_cursor_execute", count)
            shutil.rmtree(f"{JOBS_ROOT}/{lab_key}", ignore_errors=True)
    async with sessions() as session:
        row = await repo.get_step(session=session, lab_id=view.id, name="install_zstack")
    return statements, elapsed, row.output_tail or "", row.progress, caught.value


async def test_five_thousand_empty_lines_cost_a_few_writes(sessions: async_sessionmaker[AsyncSession],
                                                          vm: LoopbackSSHD, tmp_path: Path) -> None:
    installer = "yes '' | head -n 5000; echo '42% unpacking'; exit 3\n"
    statements, elapsed, tail, progress, error = await run_install(sessions, vm, tmp_path, installer)
    assert "exited with status 3" in str(error)
    assert statements < 60, f"{statements} statements for 5,000 lines"  # per poll, not per line (was > 10,000)
    assert tail.endswith("\n\n42% unpacking\n") and len(tail) <= TAIL_CHARS
    assert progress == "42% — 42% unpacking"
    assert elapsed < 30


async def test_what_a_step_keeps_of_a_long_log_is_its_tail(sessions: async_sessionmaker[AsyncSession],
                                                           vm: LoopbackSSHD, tmp_path: Path) -> None:
    # 20,000 lines of 100 characters (2 MB), and one 200 KB line without an end.
    installer = ("awk 'BEGIN { for (i = 0; i < 20000; i++) printf \"line %05d %088d\\n\", i, 0 }'; "
                 "head -c 200000 /dev/zero | tr '\\0' z; exit 4\n")
    statements, _, tail, progress, error = await run_install(sessions, vm, tmp_path, installer)
    assert "exited with status 4" in str(error)
    # The end of the endless line (passed on in 64 KiB pieces, so there may be a line break in it).
    assert len(tail) == TAIL_CHARS and set(tail.replace("\n", "")) == {"z"} and tail.endswith("z\n")
    assert progress is not None and len(progress) <= 200
    assert statements < 100, f"{statements} statements for 20,000 lines"
