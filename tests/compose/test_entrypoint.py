"""The image's entrypoint script, run here as the container runs it: migrate when asked, wait for the
database with a bound, then exec labbot with the container's arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services import __version__, db
from tests.conftest import create_pg_database, drop_pg_database, require_postgres

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
BIN = Path(sys.executable).parent  # the venv's bin, where the `labbot` console script is


def entrypoint(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the entrypoint with ``labbot`` on PATH and only the given LABBOT_* settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LABBOT_", "SLACK_"))}
    environ["PATH"] = f"{BIN}{os.pathsep}{environ.get('PATH', '')}"
    environ.update(env)
    return subprocess.run(["/bin/sh", str(ENTRYPOINT), *args], env=environ, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_it_migrates_then_runs_the_command(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}"
    result = entrypoint("db", "current", LABBOT_MIGRATE="1", LABBOT_DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    head = db.head_revision()
    assert f"current: {head}  head: {head}" in result.stdout


def test_without_migrate_it_only_runs_the_command(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}"
    result = entrypoint("db", "current", LABBOT_DATABASE_URL=url)
    assert result.returncode == 0 and "current: (empty)" in result.stdout
    assert entrypoint("version").stdout.strip() == __version__


def test_a_database_that_never_answers_stops_start_up_with_the_reason() -> None:
    result = entrypoint("version", LABBOT_MIGRATE="1", LABBOT_DB_WAIT_SECONDS="0",
                        LABBOT_DATABASE_URL="postgresql+asyncpg://labbot:pw@127.0.0.1:9/labbot")
    assert result.returncode == 1
    assert "the database did not answer within 0s: ConnectionRefusedError" in result.stderr
    assert "pw@" not in result.stderr  # the password in the URL is never printed


def test_a_bad_wait_setting_is_refused() -> None:
    result = entrypoint("version", LABBOT_MIGRATE="1", LABBOT_DB_WAIT_SECONDS="soon")
    assert result.returncode == 2 and "LABBOT_DB_WAIT_SECONDS must be a number" in result.stderr


@pytest.mark.postgres
async def test_it_migrates_a_fresh_postgresql_database() -> None:
    await require_postgres()
    url = await create_pg_database()
    try:
        result = entrypoint("db", "current", LABBOT_MIGRATE="1", LABBOT_DATABASE_URL=url)
        assert result.returncode == 0, result.stderr
        head = db.head_revision()
        assert f"current: {head}  head: {head}" in result.stdout
    finally:
        await drop_pg_database(url)
