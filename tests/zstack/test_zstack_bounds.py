"""A hostile management node (the nested ZStack runs on a VM whose owner has root): huge and dripped answers.

The servers here are real HTTP/1.1 servers on loopback that misbehave on purpose; the client must keep its
memory bounded, keep the event loop free, and keep its deadlines whatever the answer's pace.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from services.zstack import ZStackAnswerTooLargeError, ZStackTimeoutError, deadline_in
from services.zstack.wire import MAX_ANSWER_BYTES
from tests.zstack.conftest import ClientFactory

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]
MiB = 1024 * 1024


@asynccontextmanager
async def hostile_server(answer: Answer) -> AsyncIterator[str]:
    """An HTTP server on a free loopback port that reads each request's head and lets ``answer`` reply."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up on us: that is the point
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/zstack/v1"
    finally:
        server.close()
        # Handlers still writing to a client that hung up are cancelled with the server.
        await asyncio.wait_for(server.wait_closed(), 10)


def huge_json(total: int, *, announce: bool) -> Answer:
    """A 200 whose JSON body is ``total`` bytes, chunked (size unknown up front) or with its Content-Length."""

    async def answer(writer: asyncio.StreamWriter) -> None:
        block = b"a" * (1024 * 1024)
        opening, closing = b'{"version": "', b'"}'
        filler = total - len(opening) - len(closing)
        if announce:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % total + opening)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")

        async def send(data: bytes) -> None:
            writer.write(data if announce else b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()

        if not announce:
            await send(opening)
        while filler > 0:
            await send(block[:filler])
            filler -= len(block)
        await send(closing)
        if not announce:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    return answer


def drip(body: bytes, every: float) -> Answer:
    """A 200 whose body arrives one byte every ``every`` seconds: each read is quick, the answer never is."""

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)

    return answer


@asynccontextmanager
async def loop_watch() -> AsyncIterator[list[float]]:
    """Measures the longest stall of the event loop while the block runs (its first item, in seconds)."""
    worst = [0.0]

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            worst[0] = max(worst[0], now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        yield worst
    finally:
        ticker.cancel()


@pytest.mark.parametrize("announce", [False, True], ids=["chunked", "content-length"])
async def test_a_huge_answer_is_abandoned_past_the_cap_with_bounded_memory(make_client: ClientFactory,
                                                                           announce: bool) -> None:
    async with hostile_server(huge_json(6 * MAX_ANSWER_BYTES, announce=announce)) as url:
        client = make_client(url)
        tracemalloc.start()
        try:
            async with loop_watch() as stall:
                with pytest.raises(ZStackAnswerTooLargeError) as caught:
                    await client.is_ready()  # no session needed: nothing but the answer is read
                    await client.get_version(deadline=deadline_in(60))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "labbot stopped reading it" in str(caught.value)
    assert f"{MAX_ANSWER_BYTES:,} bytes" in str(caught.value)
    assert client.stats.requests <= 2  # an oversized answer is not asked for again
    assert peak < 2 * MAX_ANSWER_BYTES + 8 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert stall[0] < 1.0, f"event loop stalled {stall[0]:.2f}s"


async def test_an_answer_within_the_cap_is_read_whole(make_client: ClientFactory) -> None:
    size = 3 * MiB
    async with hostile_server(huge_json(size, announce=False)) as url:
        client = make_client(url)
        result = await client.call("GetVersion", {}, deadline=deadline_in(30))
    assert len(result["version"]) == size - len('{"version": ""}')


async def test_a_dripped_answer_does_not_stretch_is_ready_past_its_deadline(make_client: ClientFactory) -> None:
    async with hostile_server(drip(b'{"success": true}' + b" " * 4000, every=0.02)) as url:
        client = make_client(url)
        started = time.monotonic()
        async with asyncio.timeout(20):  # the old per-read timeout kept waiting ~80 s here
            ready = await client.is_ready(within=1)
        waited = time.monotonic() - started
    assert ready is False
    assert waited < 3, f"is_ready(within=1) took {waited:.1f}s"


@pytest.mark.parametrize("action", ["GetVersion", "QueryZone"])  # QueryZone: the login made for it drips
async def test_a_dripped_answer_ends_a_call_at_its_deadline(make_client: ClientFactory, action: str) -> None:
    async with hostile_server(drip(b'{"version": "5.2.1"}' + b" " * 4000, every=0.02)) as url:
        client = make_client(url, timeout=30)
        started = time.monotonic()
        async with asyncio.timeout(20):
            with pytest.raises(ZStackTimeoutError, match="deadline passed"):
                await client.call(action, {}, deadline=deadline_in(1.5))
        waited = time.monotonic() - started
    assert waited < 3.5, f"a 1.5 s deadline took {waited:.1f}s"
