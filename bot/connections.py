"""Slow and idle HTTP connections: deadlines for a request's headers and body, and a bound on connections.

uvicorn (h11) keeps a connection that never finishes its headers open forever, and its only connection bound
(``limit_concurrency``) answers 503 to everyone once idle connections fill it: a few hundred idle sockets would
lock Slack and ``/healthz`` out. ``GuardedH11Protocol`` closes a connection whose request headers are not
complete within ``header_timeout`` (counted from the connection, or from the end of the previous response),
or whose body is not complete within ``body_timeout``; at ``max_connections`` it makes room by closing the
oldest connection that has no request in progress, so a fresh request always gets through.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

_order = itertools.count()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body deadlines and a connection bound (see the module docstring).

    Configure it with ``configure``, which returns a subclass bound to the limits (uvicorn builds one protocol
    object per connection from the class it is given).
    """

    header_timeout: float = 10.0
    body_timeout: float = 20.0
    max_connections: int = 256

    @classmethod
    def configure(cls, *, header_timeout: float, body_timeout: float,
                  max_connections: int) -> type[GuardedH11Protocol]:
        """A protocol class with these limits."""
        return type("GuardedH11Protocol", (cls,), {"header_timeout": header_timeout, "body_timeout": body_timeout,
                                                  "max_connections": max_connections})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None
        self.opened = next(_order)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._make_room()
        self._arm("headers", self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_state()

    @property
    def busy(self) -> bool:
        """Whether a request is being handled (its response not yet complete)."""
        return self.cycle is not None and not self.cycle.response_complete

    def _follow_state(self) -> None:
        """Arm the deadline for what the client still owes: headers (IDLE), a body (SEND_BODY), or nothing."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._waiting_for != "body":
                self._arm("body", self.body_timeout)
        elif state is h11.IDLE and not self.busy:
            if self._waiting_for != "headers" and self.timeout_keep_alive_task is None:
                self._arm("headers", self.header_timeout)
        else:
            self._disarm()

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._waiting_for = what
        self._deadline = self.loop.call_later(seconds, self._expire, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._waiting_for = None, None

    def _expire(self, what: str) -> None:
        self._deadline, self._waiting_for = None, None
        if not self.transport.is_closing() and (what == "body" or not self.busy):
            log.info("closed a connection from %s that sent no complete request %s in time",
                     f"{self.client[0]}:{self.client[1]}" if self.client else "?", what)
            self.transport.close()

    def _make_room(self) -> None:
        """Close the oldest connection with no request in progress (this one, if every other is busy)."""
        idle = [c for c in self.connections
                if isinstance(c, GuardedH11Protocol) and c is not self and not c.busy]
        victim = min(idle, key=lambda c: c.opened) if idle else self
        log.warning("at the connection limit (%d): closing the oldest idle connection", self.max_connections)
        victim.transport.close()
