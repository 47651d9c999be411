"""Leader election among labbot replicas: a PostgreSQL advisory lock held on a dedicated connection.

The lock is a session-level advisory lock, so PostgreSQL frees it when the connection ends, however it ends
(the process killed, the backend terminated, the network gone). That is why it lives on its own asyncpg
connection and not on a pooled one: the pool would recycle the connection, or lend it to someone else.

The holder checks every interval that its connection still holds the lock, and steps down the moment a
check fails or asyncpg reports the connection closed. The session asks the server for TCP keepalives, so a
vanished holder's lock is freed after about ``idle + interval * count`` seconds (25 here) rather than the
kernel's two hours; a holder cut off from the server has stepped down well before that, at its first failed
check. An overlap is possible only for a moment: PostgreSQL frees a dead backend's locks just before its
socket closes, so a follower may win the lock before the old holder sees its connection end, and the old holder
steps down at that sight or at its next check at the latest. The jobs stay correct regardless: every action
they take is claimed with the lab's optimistic lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# One lock per database: labbot's scheduler. A constant derived from a name, so it is easy to find in pg_locks.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"labbot.scheduler.leader").digest()[:8], "big", signed=True)
KEEPALIVE = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}


def asyncpg_dsn(database_url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg wants, from labbot's SQLAlchemy URL (never log it)."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        raise ValueError("leader election needs a PostgreSQL database")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class AdvisoryLock:
    """``pg_try_advisory_lock`` on a connection of its own; ``lost`` is set when that connection closes."""

    def __init__(self, dsn: str, *, name: str, key: int = LOCK_KEY, timeout: float = 5.0) -> None:
        self._dsn = dsn
        self.name = name[:63]  # PostgreSQL truncates application_name at 63 bytes
        self.key = key
        self.timeout = timeout
        self.lost = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._held = False

    @property
    def held(self) -> bool:
        """Whether this process believes it holds the lock (``verify`` asks the server)."""
        return self._held and self._conn is not None and not self._conn.is_closed()

    async def try_acquire(self) -> bool:
        """Take the lock if it is free; False when another session holds it. Connects first if needed."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._dsn, timeout=self.timeout,
                server_settings={"application_name": self.name, **KEEPALIVE},
            )
            self._conn.add_termination_listener(self._on_closed)
            self.lost.clear()
        async with asyncio.timeout(self.timeout):
            self._held = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", self.key))
        return self._held

    async def verify(self) -> bool:
        """Ask the server whether our session still holds the lock; any doubt (timeout, error) is a no."""
        if not self.held or self._conn is None:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                still = await self._conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid() AND objsubid = 1)"
                )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            log.warning("leader lock check failed (%s); stepping down", type(err).__name__)
            still = False
        if not still:
            await self.close()
        return bool(still)

    async def release(self) -> None:
        """Give the lock back (if held) and close the connection."""
        if self._held and self._conn is not None and not self._conn.is_closed():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await self._conn.execute("SELECT pg_advisory_unlock($1::bigint)", self.key)
        await self.close()

    async def close(self) -> None:
        """Drop the connection (and with it, on the server, the lock)."""
        self._held = False
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            async with asyncio.timeout(self.timeout):
                await conn.close()
        except Exception:
            conn.terminate()  # the server frees the lock when it notices the socket is gone

    def _on_closed(self, _conn: object) -> None:
        self._held = False
        self.lost.set()
