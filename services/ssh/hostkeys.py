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

    async def pin(self, lab: str, host: str, key: str) -> str:
        """Pin ``key`` for ``host`` in ``lab`` unless a key is pinned already (kept); the key pinned now, which is
        another one when a concurrent first connection pinned first."""

    async def forget(self, lab: str, host: str | None = None) -> None:
        """Drop every pinned key of ``lab`` (when the lab is destroyed), or only ``host``'s (a recreated VM)."""


class MemoryHostKeyStore:
    """A HostKeyStore in a dict, for tests and the console demo."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], str] = {}

    async def get(self, lab: str, host: str) -> str | None:
        """The pinned key, if any."""
        return self.keys.get((lab, host))

    async def pin(self, lab: str, host: str, key: str) -> str:
        """Pin on first use; a second pin for the same host keeps the first, as in the database store."""
        return self.keys.setdefault((lab, host), key)

    async def forget(self, lab: str, host: str | None = None) -> None:
        """Forget all keys of one lab, or one host's."""
        for entry in [k for k in self.keys if k[0] == lab and host in (None, k[1])]:
            del self.keys[entry]


class SessionPins:
    """One SSH session's view of a HostKeyStore: what it read or pinned there is not asked again.

    Every reconnection of a session checks the host key, and each check would otherwise be a database read. A pin
    changes only through ``forget`` (a recreated VM), after which labbot opens a new session anyway.
    """

    def __init__(self, store: HostKeyStore) -> None:
        self._store = store
        self._known: dict[tuple[str, str], str] = {}

    async def get(self, lab: str, host: str) -> str | None:
        """The pinned key, asked of the store until there is one."""
        if (lab, host) not in self._known:
            key = await self._store.get(lab, host)
            if key is None:
                return None
            self._known[(lab, host)] = key
        return self._known[(lab, host)]

    async def pin(self, lab: str, host: str, key: str) -> str:
        """Pin in the store; remember the key it holds now."""
        self._known[(lab, host)] = pinned = await self._store.pin(lab, host, key)
        return pinned

    async def forget(self, lab: str, host: str | None = None) -> None:
        """Forget in the store and here."""
        for entry in [k for k in self._known if k[0] == lab and host in (None, k[1])]:
            del self._known[entry]
        await self._store.forget(lab, host)
