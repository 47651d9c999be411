"""``labbot sweep`` as an admin runs it: a real process on the configured database and lab platform.

SQLite only here; ``test_replicas`` runs ``labbot sweep`` against PostgreSQL next to live workers.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from services.db import utcnow
from services.labs.models import LabState
from tests.fakes.keys import SECRET_KEY
from tests.scheduler.conftest import World

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.parametrize("empty_database_url", ["sqlite"], indirect=True)


async def labbot(world: World, *args: str, **env: str) -> tuple[int, str]:
    """Run ``labbot ARGS`` with the world's database and platform; returns the exit status and output."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LABBOT_"))}
    environ.update({"LABBOT_DATABASE_URL": world.settings.database_url, "LABBOT_DEFAULT_PROFILE": "sandbox",
                    "LABBOT_PLATFORM_URL": world.settings.platform_url, "LABBOT_EXPIRY_WARNING_OFFSETS": "30m",
                    "LABBOT_SECRET_KEY": SECRET_KEY})
    environ.update(env)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", *args, cwd=ROOT, env=environ,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode() + err.decode()


async def test_sweep_reports_in_a_dry_run_then_acts(world: World) -> None:
    now = utcnow()
    await world.add_lab("soon", LabState.READY, expires_in=timedelta(0))
    await world.add_lab("old", LabState.READY, expires_in=timedelta(0))
    await world.update("soon", expires_at=now + timedelta(minutes=20))
    await world.update("old", expires_at=now - timedelta(minutes=1))

    code, output = await labbot(world, "sweep", "--dry-run")
    assert code == 0, output
    for line in ("expiry: would warn: soon (30m)", "expiry: would destroy (expired): old",
                 "health: would check soon, old", "orphans: 0 of 0 marked resources are orphans",
                 "orphans: dry run, nothing recorded, deleted or reported"):
        assert line in output
    assert (await world.lab("soon")).state == LabState.READY and (await world.lab("old")).state == LabState.READY

    code, output = await labbot(world, "sweep", "--only", "expiry")
    assert code == 0, output
    assert "expiry: warn: soon (30m)" in output and "expiry: destroy (expired): old" in output
    assert "torn down by the running labbot's engine" in output and "health:" not in output
    assert (await world.lab("soon")).state == LabState.EXPIRING and (await world.lab("old")).state == "destroying"


async def test_sweep_fails_when_a_job_cannot_do_its_work(world: World) -> None:
    code, output = await labbot(world, "sweep", "--only", "orphans", LABBOT_PLATFORM_URL="http://127.0.0.1:9/zstack/v1")
    assert code == 1 and "orphans: could not read the lab platform" in output


async def test_sweep_refuses_an_unmigrated_database(world: World, tmp_path: Path) -> None:
    code, output = await labbot(world, "sweep", LABBOT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    assert code == 2 and "run `labbot db upgrade` first" in output
