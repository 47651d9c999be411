"""Pinned SSH host keys: trust on first use, then refuse any other key for that lab host.

The store is keyed by lab and host role (``vm1``/``vm2``), not by address: a lab's VMs keep their roles even if
addresses are reused by other labs later. The lead's database-backed store implements the same Protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

# Called when a host presents a key other than the pinned one: (lab, host, old fingerprint, new fingerprint).
# The engine writes an audit event from it. A coroutine function or a plain function.
KeyChangedCallback = Callable[[str, str, str, str], Awaitable[None] | None]


class HostKeyStore(Protocol):
    """Where pinned host keys live (OpenSSH public key lines, e.g. ``ssh-ed25519 AAAA...``)."""

    async def get(self, lab: str, host: str) -> str | None:
        """The pinned key of ``host`` in ``lab``, or None if none was pinned yet."""

    async def pin(self, lab: str, host: str, key: str) -> None:
        """Pin ``key`` for ``host`` in ``lab`` (first use only; an existing pin is kept)."""

    async def forget(self, lab: str, host: str | None = None) -> None:
        """Drop every pinned key of ``lab`` (when the lab is destroyed), or only ``host``'s (a recreated VM)."""


class MemoryHostKeyStore:
    """A HostKeyStore in a dict, for tests and the console demo."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], str] = {}

    async def get(self, lab: str, host: str) -> str | None:
        """The pinned key, if any."""
        return self.keys.get((lab, host))

    async def pin(self, lab: str, host: str, key: str) -> None:
        """Pin on first use; a second pin for the same host is ignored, as in the database store."""
        self.keys.setdefault((lab, host), key)

    async def forget(self, lab: str, host: str | None = None) -> None:
        """Forget all keys of one lab, or one host's."""
        for entry in [k for k in self.keys if k[0] == lab and host in (None, k[1])]:
            del self.keys[entry]
