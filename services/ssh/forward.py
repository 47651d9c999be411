"""Local port forwarding that survives SSH reconnects.

asyncssh's own ``forward_local_port`` dies with its connection, and a new one would get a new local port. Here
the listener is ours (127.0.0.1, a free port chosen once) and each accepted TCP connection asks the session for
a channel on whatever SSH connection is current, so the ZStack client's base URL stays valid across drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncssh

log = logging.getLogger(__name__)

ChannelOpener = Callable[[], Awaitable[tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]]]

_CHUNK = 64 * 1024


class LocalForward:
    """A 127.0.0.1 listener whose connections are carried to a remote host:port over SSH."""

    def __init__(self, open_channel: ChannelOpener, description: str) -> None:
        self._open_channel = open_channel
        self._description = description
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> int:
        """Start listening; returns the local port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("local forward 127.0.0.1:%d %s", self.port, self._description)
        return self.port

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._carry(reader, writer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            remote_reader, remote_writer = await self._open_channel()
        except Exception as err:  # any failure to open means: refuse this one TCP connection, keep listening
            log.warning("local forward %s: cannot open channel: %s", self._description, err)
            writer.close()
            return
        try:
            await asyncio.gather(_pump(reader, remote_writer), _pump(remote_reader, writer))
        finally:
            remote_writer.close()
            writer.close()

    async def close(self) -> None:
        """Stop listening and cut the connections being carried."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)


async def _pump(
    source: asyncio.StreamReader | asyncssh.SSHReader[bytes], sink: asyncio.StreamWriter | asyncssh.SSHWriter[bytes]
) -> None:
    try:
        while data := await source.read(_CHUNK):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, asyncssh.Error, OSError):
        # One side went away; closing both ends (in the caller) is all that is left to do.
        return
