"""Slow and idle connections: deadlines for headers and bodies, and /healthz alive under hundreds of idle
sockets (loopback only, a bounded number of them)."""

from __future__ import annotations

import asyncio
import time

from tests.slack.harness import running_bot
from tests.slack.world import Sessions

IDLE = 400


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """How long until the server closed the connection (fails the test after ``seconds``)."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), seconds)
    assert b"200 OK" not in data
    return time.monotonic() - started


async def test_unfinished_headers_and_bodies_are_closed_and_idle_sockets_lock_nobody_out(sessions: Sessions) -> None:
    overrides = {"http_header_timeout_seconds": 0.5, "http_body_timeout_seconds": 1.0, "http_max_connections": 128}
    async with running_bot(sessions, overrides=overrides) as h:
        port = h.http.base_url.port
        # Headers that never end.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /slack/events HTTP/1.1\r\nhost: labbot\r\nx-slow: ")
        await writer.drain()
        assert await _closed_within(reader, 10) >= 0.4
        writer.close()
        # A body that never ends.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /slack/events HTTP/1.1\r\nhost: labbot\r\ncontent-type: application/json\r\n"
                     b"content-length: 1000\r\n\r\n{\"a\":")
        await writer.drain()
        await _closed_within(reader, 10)
        writer.close()
        # Hundreds of idle connections (more than the limit): /healthz and Slack still get through.
        idle = []
        try:
            for _ in range(IDLE):
                idle.append(await asyncio.open_connection("127.0.0.1", port))
            health = await h.http.get("/healthz")
            assert health.status_code == 200
            assert (await h.command("help")).status_code == 200
            await asyncio.sleep(0)
        finally:
            for _reader, idle_writer in idle:
                idle_writer.close()
