"""The remote connections of one lab, opened lazily and shared by its steps.

SSH goes to VM1 directly and to VM2 only through VM1; the nested ZStack's API (port 8080 on VM2) is reached
through an SSH local forward over that same path, so labbot never needs a route to the lab's VPC.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import SecretStr

from config.settings import Settings
from services.ssh.hostkeys import HostKeyStore, KeyChangedCallback
from services.ssh.keys import KeyPair, keypair_from_private
from services.ssh.session import HostAddress, LabSSH
from services.zstack.client import ZStackClient

log = logging.getLogger(__name__)


class LabConnections:
    """Lazily opened SSH session and nested ZStack client of one lab."""

    def __init__(
        self,
        *,
        lab_uuid: str,
        settings: Settings,
        host_keys: HostKeyStore,
        on_key_changed: KeyChangedCallback | None = None,
    ) -> None:
        self.lab_uuid = lab_uuid
        self.settings = settings
        self.host_keys = host_keys
        self.on_key_changed = on_key_changed
        self._ssh: LabSSH | None = None
        self._nested: ZStackClient | None = None
        self._lock = asyncio.Lock()
        self._nested_password: str | None = None

    async def ssh(self, *, vm1: str, vm1_port: int, vm2: str | None, vm2_port: int, private_key: SecretStr) -> LabSSH:
        """The lab's SSH session (VM2 through VM1), opened on first use."""
        async with self._lock:
            if self._ssh is None:
                key: KeyPair = keypair_from_private(private_key)
                self._ssh = LabSSH(
                    self.lab_uuid,
                    vm1=HostAddress(vm1, vm1_port),
                    vm2=HostAddress(vm2, vm2_port) if vm2 else None,
                    username=self.settings.ssh_user,
                    key=key,
                    host_keys=self.host_keys,
                    on_key_changed=self.on_key_changed,
                )
                await self._ssh.__aenter__()
            return self._ssh

    async def nested(self, ssh: LabSSH, *, api_port: int, password: SecretStr) -> ZStackClient:
        """A client of the nested ZStack on VM2 as ``admin`` with ``password``, through an SSH tunnel via VM1
        (a new client when asked with another password: the lab's replaces the installer's default)."""
        async with self._lock:
            if self._nested is not None and self._nested_password != password.get_secret_value():
                await self._close_nested()
            if self._nested is None:
                local_port = await ssh.forward_local("vm2", api_port)
                self._nested = ZStackClient(
                    f"http://127.0.0.1:{local_port}/zstack/v1",
                    "admin",
                    password,
                    timeout=self.settings.platform_timeout_seconds,
                )
                self._nested_password = password.get_secret_value()
            return self._nested

    async def _close_nested(self) -> None:
        if self._nested is not None:
            try:
                await self._nested.aclose()
            except Exception:
                log.warning("closing the nested ZStack client failed", exc_info=True)
            self._nested = None
            self._nested_password = None

    async def forget_host_key(self, host: str) -> None:
        """Drop the pinned key of ``host`` (its VM was recreated), closing a session that may still use it."""
        await self.host_keys.forget(self.lab_uuid, host)
        async with self._lock:
            if self._ssh is not None:
                await self.close()

    async def close(self) -> None:
        """Log out of the nested ZStack and close SSH (errors are logged: the lab's work is over anyway)."""
        await self._close_nested()
        if self._ssh is not None:
            try:
                await self._ssh.close()
            except Exception:
                log.warning("closing the lab's SSH session failed", exc_info=True)
            self._ssh = None
