"""The embedded database under contention: a SQLite write waits for another writer rather than failing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import timedelta

from services import claims, db
from services.db import utcnow

# Longer than the 5 s SQLite (and Python's sqlite3) wait by default, which once failed a Slack request in CI.
HOLD_SECONDS = 6.0


async def test_a_sqlite_write_waits_out_another_writer_holding_the_lock_for_seconds(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}"
    await db.upgrade(url)
    engine = db.make_engine(url)
    sessions = db.make_sessionmaker(engine)
    locked, release = threading.Event(), threading.Event()

    def other_writer() -> None:  # another connection (another labbot process, say) inside a long commit
        conn = sqlite3.connect(tmp_path / "labbot.db", isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(30)
            conn.execute("COMMIT")
        finally:
            conn.close()

    holder = threading.Thread(target=other_writer)
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 10)
        claim = asyncio.create_task(claims.claim(sessions, "signature:abc", until=utcnow() + timedelta(minutes=5)))
        await asyncio.sleep(HOLD_SECONDS)
        assert not claim.done()  # still waiting for the lock, not failed
        release.set()
        assert await asyncio.wait_for(claim, 30) is True
        assert await claims.count(sessions) == 1
    finally:
        release.set()
        await asyncio.to_thread(holder.join)
        await engine.dispose()
