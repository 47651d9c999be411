"""Opening one SSH connection to a lab VM: host-key pinning, authentication, and error mapping at the edge.

The host key is checked by ``_PinningClient`` against the key pinned for that lab host (none yet: trust on
first use, pinned once the connection is fully established). asyncssh's exceptions become the project's
``SSHError`` family here, in one place, with the lab and host named and no key material.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Literal

import asyncssh

from services.ssh.errors import HostKeyChangedError, SSHAuthError, SSHError, SSHUnreachableError
from services.ssh.hostkeys import HostKeyStore, KeyChangedCallback

log = logging.getLogger(__name__)

Target = Literal["vm1", "vm2"]


@dataclass(frozen=True)
class HostAddress:
    """Where a lab VM's sshd listens (for VM2: as seen from VM1)."""

    host: str
    port: int = 22


@dataclass(frozen=True)
class ConnectRequest:
    """Everything needed to open (and check) one connection to a lab host."""

    lab: str
    target: Target
    address: HostAddress
    username: str
    client_key: asyncssh.SSHKey
    host_keys: HostKeyStore
    connect_timeout: float
    keepalive_interval: float
    on_key_changed: KeyChangedCallback | None = None


class _PinningClient(asyncssh.SSHClient):
    """Accepts the pinned host key only (or any key when none is pinned yet), remembering what was offered."""

    def __init__(self, pinned: asyncssh.SSHKey | None) -> None:
        self.pinned = pinned
        self.offered: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.offered = key
        return self.pinned is None or key.public_data == self.pinned.public_data


async def open_connection(
    request: ConnectRequest, *, tunnel: asyncssh.SSHClientConnection | None = None
) -> asyncssh.SSHClientConnection:
    """Connect (through ``tunnel`` for VM2), verify the host key against the pin, authenticate with the lab key."""
    conn, client = await _connect(
        request, tunnel, refused=f"refused labbot's key for user {request.username}",
        client_keys=[request.client_key], password=None,
        keepalive_interval=request.keepalive_interval, keepalive_count_max=3,
    )
    lab, target = request.lab, request.target
    if client.pinned is None and client.offered is not None:
        offered = client.offered.export_public_key("openssh").decode().strip()
        pinned = await request.host_keys.pin(lab, target, offered)
        if pinned != offered:
            # Another connection to this host pinned first, a key other than the one this host just offered.
            client.pinned = asyncssh.import_public_key(pinned)
            if client.pinned.public_data != client.offered.public_data:
                conn.close()
                await _refuse_changed_key(request, client)
        log.info("pinned ssh host key lab=%s host=%s fingerprint=%s", lab, target, client.offered.get_fingerprint())
    log.info("ssh connected lab=%s host=%s addr=%s", lab, target, _where(request, tunnel))
    return conn


async def check_password_login(
    request: ConnectRequest, password: str, *, tunnel: asyncssh.SSHClientConnection | None = None
) -> None:
    """Log in once with ``password`` only (no key), as the nested ZStack does to deploy VM2; then log out.

    The host key must be the pinned one (the key check of ``open_connection`` ran first). Raises
    ``SSHAuthError`` when the server refuses the password (e.g. ``PasswordAuthentication no``).
    """
    conn, _client = await _connect(
        request, tunnel, refused=f"refuses password login for {request.username}",
        client_keys=None, password=password, preferred_auth=("password",),
    )
    conn.close()
    await conn.wait_closed()


def _where(request: ConnectRequest, tunnel: asyncssh.SSHClientConnection | None) -> str:
    return f"{request.address.host}:{request.address.port}" + (" via vm1" if tunnel else "")


async def _connect(
    request: ConnectRequest, tunnel: asyncssh.SSHClientConnection | None, *, refused: str, **auth: Any
) -> tuple[asyncssh.SSHClientConnection, _PinningClient]:
    """One connection with the host key checked against the pin and ``auth``'s way of logging in; asyncssh's
    errors become the project's here (``refused`` says what the server refused)."""
    lab, target, address = request.lab, request.target, request.address
    pinned_text = await request.host_keys.get(lab, target)
    client = _PinningClient(asyncssh.import_public_key(pinned_text) if pinned_text else None)
    where = _where(request, tunnel)
    try:
        conn = await asyncio.wait_for(
            asyncssh.connect(
                address.host,
                address.port,
                tunnel=tunnel,
                client_factory=lambda: client,
                username=request.username,
                known_hosts=([], [], []),  # an empty trust list: every key goes through _PinningClient
                agent_path=None,
                config=None,
                kbdint_auth=False,
                connect_timeout=request.connect_timeout,
                **auth,
            ),
            timeout=request.connect_timeout * 2,
        )
    except asyncssh.HostKeyNotVerifiable:
        await _refuse_changed_key(request, client)
        raise SSHError(f"host key of {target} ({where}) not accepted", lab=lab, host=target) from None
    except asyncssh.PermissionDenied:
        raise SSHAuthError(f"{target} ({where}) in lab {lab} {refused}", lab=lab, host=target) from None
    except asyncssh.ChannelOpenError as err:
        raise SSHUnreachableError(
            f"vm1 could not reach {target} ({where}) in lab {lab}: {err.reason}", lab=lab, host=target
        ) from None
    except (TimeoutError, OSError, asyncssh.Error) as err:
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or type(err).__name__
        raise SSHUnreachableError(
            f"cannot connect to {target} ({where}) in lab {lab}: {reason}", lab=lab, host=target
        ) from None
    return conn, client


async def _refuse_changed_key(request: ConnectRequest, client: _PinningClient) -> None:
    if client.pinned is None or client.offered is None:
        return
    old_fp, new_fp = client.pinned.get_fingerprint(), client.offered.get_fingerprint()
    log.error("ssh host key changed lab=%s host=%s pinned=%s offered=%s", request.lab, request.target, old_fp, new_fp)
    if request.on_key_changed is not None:
        outcome = request.on_key_changed(request.lab, request.target, old_fp, new_fp)
        if inspect.isawaitable(outcome):  # plain functions are accepted too
            await outcome
    raise HostKeyChangedError(lab=request.lab, host=request.target, old_fingerprint=old_fp, new_fingerprint=new_fp)
