"""Files that hold secrets or host keys are labbot's alone, whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from services import db
from services.files import private_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_sqlite_database_and_state_directory_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "state" / "labbot.db"
        url = f"sqlite+aiosqlite:///{path}"
        await db.upgrade(url)
        engine = db.make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
                await conn.exec_driver_sql("INSERT INTO probe VALUES (1)")
            for each in path.parent.glob("labbot.db*"):  # the database and its -wal/-shm files
                assert _mode(each) == 0o600, (each, oct(_mode(each)))
        finally:
            await engine.dispose()
        # An existing, too open database file is tightened when labbot opens it.
        path.chmod(0o644)
        await db.make_engine(url).dispose()
        assert _mode(path) == 0o600
        captures = private_dir(tmp_path / "var" / "captures" / "lab")
        assert [_mode(p) for p in (tmp_path / "var", captures.parent, captures)] == [0o700] * 3
    finally:
        os.umask(old)
