"""Crash and resume: a labbot process SIGKILLed right after each step in turn, the next one finishes the lab.

Each incarnation is a real process (tests/engine/crash_worker.py) that resumes the lab, gets exactly one more
step recorded done, and dies on the spot, holding its lease and whatever else it was doing on the other
branches. The next one starts once that lease has run out (set in the past here, instead of waiting for it).
At the end the lab is ready and neither simulator holds a duplicated VM, volume or nested resource.

It runs on SQLite, the single-process case (a demo or a one-replica labbot restarted after a crash); killed
replicas on PostgreSQL, where another live process takes the lab over, are tests/reliability/test_process_death.py
and tests/engine/test_engine.py's lease tests. Each incarnation costs a few seconds, so one database is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from services import db
from services.db import utcnow
from services.labs.build.steps import TITLES
from services.labs.models import Lab, LabState, StepState
from services.labs.service import LabService
from tests.engine.sandbox_lab import NESTED_KINDS, OWNER, box_fixture, lab_world

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

box = box_fixture("crash")
PROJECT = Path(__file__).resolve().parents[2]
CONCURRENT = {"attach_volume", "wait_ssh", "iscsi_target", "serve_image", "install_zstack", "nested_storage",
              "nested_network_image"}


class Workers:
    """The warm parent of the crashing labbot processes (tests/engine/crash_worker.py)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def incarnation(self, overrides: dict[str, object]) -> tuple[int, list[str]]:
        """Fork one labbot process; its exit status and the steps it saw finish."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(overrides).encode() + b"\n")
        await self.proc.stdin.drain()
        steps = []
        async with asyncio.timeout(90):
            while True:
                line = (await self.proc.stdout.readline()).decode().strip()
                if not line:
                    raise RuntimeError("the crash worker parent died")
                kind, _, value = line.partition(" ")
                if kind == "exit":
                    return int(value), steps
                steps.append(value)


@contextlib.asynccontextmanager
async def workers(log: Path) -> AsyncIterator[Workers]:
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.engine.crash_worker", cwd=PROJECT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err)
    try:
        yield Workers(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}"
    await db.upgrade(url)
    return url


async def test_killed_after_each_step_in_turn_the_lab_still_becomes_ready_once(box, sqlite_url: str,
                                                                               tmp_path: Path) -> None:
    async with lab_world(box, sqlite_url, tmp_path, start=False) as world:
        settings = world.settings
        # The parent only registers the lab; the builds happen in the worker processes.
        service = LabService(sessions=world.runtime.sessions, settings=settings, profiles=world.runtime.profiles,
                             notifier=world.notices)
        view = await service.create(OWNER, name="crashy")
        overrides = {"database_url": settings.database_url, "state_dir": str(tmp_path),
                     "platform_url": settings.platform_url, "platform_account": "admin",
                     "platform_password": "password", "default_profile": "sandbox"}
        log = tmp_path / "workers.log"
        crashed_after: list[str] = []
        async with workers(log) as forks:
            for _ in range(len(TITLES) + 1):
                code, seen = await forks.incarnation(overrides)
                if code == 0:
                    break
                assert code == -9 and len(seen) == 1 and seen[0] in TITLES, (code, seen, log.read_text()[-3000:])
                crashed_after += seen
                lab = await world.lab_row("crashy")
                assert lab.lease_owner is not None  # a killed process does not give its lease back
                async with world.runtime.sessions() as session, session.begin():
                    await session.execute(update(Lab).where(Lab.id == view.id)
                                          .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
            else:
                pytest.fail(f"the lab never finished; crashed after {crashed_after}")

        # Every step was a crash point once, except that a step of a concurrent branch may be recorded done
        # while its sibling's process is already dying (between its record and its own hook).
        assert len(set(crashed_after)) == len(crashed_after), crashed_after
        assert set(TITLES) - set(crashed_after) <= CONCURRENT, crashed_after
        lab = await world.lab_row("crashy")
        assert lab.state == LabState.READY, (lab.failed_step, lab.error, log.read_text()[-3000:])
        steps = await world.steps(lab.id)
        assert all(s.state == StepState.DONE for s in steps.values())

        # No duplicate anywhere: the outer platform, the machine, the nested ZStack.
        assert world.sim.state.count("vm") == 2 and len(world.outer_vms(lab.uuid)) == 2
        assert [v["uuid"] for v in world.sim.state.list("volume", type="Data")] == [lab.volume_uuid]
        assert len([v for v in box.config.vms_dir.iterdir()]) == 2
        assert await world.nested_counts(lab) == dict.fromkeys(NESTED_KINDS, 1)
        async with world.lab_ssh(lab) as ssh:
            installers = await ssh.run("vm2", "pgrep -c -f 'role [n]ested' || true", timeout=15)
            assert installers.stdout.strip() == "1"  # one nested management node, not one per attempt

        await world.runtime.start()
        await world.service.destroy(OWNER, "crashy")
        await world.runtime.engine.wait_idle(lab.id, timeout=60)
        assert (await world.lab_row("crashy")).state == LabState.DESTROYED
        assert await world.machine_leftovers(lab) == []
