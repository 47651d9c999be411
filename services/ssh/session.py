"""One lab's SSH session: a connection to VM1, VM2 tunnelled through it, both reused and re-opened on demand.

VM2 has no route from labbot; every byte to it goes through VM1 (``tunnel=``), exactly as a person would with
``ssh -J``. Connections are opened lazily, kept across steps, and re-opened transparently when a drop is noticed
before a command starts (a command that was running when the connection dropped is reported, not re-run:
it may have had effects; long commands use ``services.ssh.detached`` instead).

Host keys are trusted on first use and pinned through a ``HostKeyStore``; a different key later is refused
with ``HostKeyChangedError`` and reported to ``on_key_changed`` for the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import posixpath
import signal
from collections.abc import Coroutine, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncssh

from services import shell
from services.ssh.connect import ConnectRequest, HostAddress, Target, check_password_login, open_connection
from services.ssh.errors import (
    HostKeyChangedError,
    SSHAuthError,
    SSHCommandError,
    SSHError,
    SSHOutputLimitError,
    SSHTimeoutError,
    SSHUnreachableError,
)
from services.ssh.forward import LocalForward
from services.ssh.hostkeys import HostKeyStore, KeyChangedCallback, SessionPins
from services.ssh.keys import KeyPair
from services.ssh.output import MAX_OUTPUT_CHARS, READ_CHUNK, OutputBudget, OutputLimitReached, StreamCollector
from services.ssh.result import CommandResult, LineCallback, Runner

log = logging.getLogger(__name__)

__all__ = ["HostAddress", "LabSSH", "Target"]

# Errors that mean "the transport is gone": the connection is dropped and re-opened on next use.
_TRANSPORT_ERRORS = (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError, BrokenPipeError)

# After a command times out, how long a fresh `true` on the same connection may take before the connection is
# judged dead. Keepalives alone cannot tell: a peer whose sshd lost its session process still answers them at the
# transport level while no channel ever opens or finishes again.
LIVENESS_TIMEOUT = 5.0


class LabSSH:
    """SSH to one lab's VMs. Use as ``async with LabSSH(...) as ssh:``; every method may be called concurrently."""

    def __init__(
        self,
        lab: str,
        *,
        vm1: HostAddress,
        vm2: HostAddress | None,
        username: str,
        key: KeyPair,
        host_keys: HostKeyStore,
        connect_timeout: float = 10,
        on_key_changed: KeyChangedCallback | None = None,
        keepalive_interval: float = 5,
    ) -> None:
        self.lab = lab
        self.username = shell.username(username)
        self._addresses: dict[Target, HostAddress | None] = {"vm1": vm1, "vm2": vm2}
        self._client_key = key.to_asyncssh()
        self._host_keys = SessionPins(host_keys)  # reconnections do not ask the store again
        self._connect_timeout = connect_timeout
        self._keepalive_interval = keepalive_interval
        self._on_key_changed = on_key_changed
        self._conns: dict[Target, asyncssh.SSHClientConnection] = {}
        self._locks: dict[Target, asyncio.Lock] = {"vm1": asyncio.Lock(), "vm2": asyncio.Lock()}
        self._forwards: list[LocalForward] = []
        self._closed = False

    async def __aenter__(self) -> LabSSH:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- connections ---------------------------------------------------------------------------------------

    def _address(self, target: Target) -> HostAddress:
        address = self._addresses.get(target)
        if address is None:
            raise SSHError(f"lab {self.lab} has no {target} address yet", lab=self.lab, host=target)
        return address

    async def connection(self, target: Target) -> asyncssh.SSHClientConnection:
        """The live connection to ``target``, opened (or re-opened after a drop) if needed."""
        if self._closed:
            raise SSHError(f"SSH session of lab {self.lab} is closed", lab=self.lab, host=target)
        async with self._locks[target]:
            conn = self._conns.get(target)
            if conn is not None and not conn.is_closed():
                return conn
            if conn is not None:
                log.info("ssh connection lost; reconnecting lab=%s host=%s", self.lab, target)
            conn = await self._open(target)
            self._conns[target] = conn
            return conn

    def _forget(self, target: Target) -> None:
        conn = self._conns.pop(target, None)
        if conn is not None:
            conn.close()
        if target == "vm1":  # VM2's tunnel rides on VM1's connection
            self._forget("vm2")

    async def _open(self, target: Target) -> asyncssh.SSHClientConnection:
        tunnel = await self.connection("vm1") if target == "vm2" else None
        return await open_connection(
            ConnectRequest(
                lab=self.lab, target=target, address=self._address(target), username=self.username,
                client_key=self._client_key, host_keys=self._host_keys, connect_timeout=self._connect_timeout,
                keepalive_interval=self._keepalive_interval, on_key_changed=self._on_key_changed,
            ),
            tunnel=tunnel,
        )

    async def check_password(self, target: Target, password: str) -> None:
        """Log in to ``target`` with the user's password alone (VM2 through VM1); ``SSHAuthError`` if refused."""
        tunnel = await self.connection("vm1") if target == "vm2" else None
        await check_password_login(
            ConnectRequest(
                lab=self.lab, target=target, address=self._address(target), username=self.username,
                client_key=self._client_key, host_keys=self._host_keys, connect_timeout=self._connect_timeout,
                keepalive_interval=self._keepalive_interval, on_key_changed=self._on_key_changed,
            ),
            password,
            tunnel=tunnel,
        )

    async def _drop_if_dead(self, target: Target) -> None:
        """After a timeout: keep the connection if it still runs a trivial command, else drop it.

        A slow command says nothing about the connection, but a connection that silently stopped carrying
        channels would time out every later command too; dropping it lets the next use open a fresh one.
        """
        conn = self._conns.get(target)
        if conn is None or conn.is_closed():
            return
        probe: asyncssh.SSHClientProcess[bytes] | None = None
        try:
            async with asyncio.timeout(LIVENESS_TIMEOUT):
                probe = await conn.create_process("true", stdin=asyncssh.DEVNULL, encoding=None)
                # Its end of output, or any byte a login script prints first: either way the far end answered.
                await probe.stdout.read(1)
            return
        except (*_TRANSPORT_ERRORS, asyncssh.ChannelOpenError, TimeoutError):
            pass
        finally:
            if probe is not None:
                probe.close()
        if self._conns.get(target) is conn:
            log.warning("ssh connection stopped answering; dropping it lab=%s host=%s", self.lab, target)
            self._forget(target)
        if target == "vm2":  # the tunnel under it may be what stopped
            await self._drop_if_dead("vm1")

    @contextlib.contextmanager
    def _transport_errors(self, target: Target, command: str) -> Iterator[None]:
        try:
            yield
        except _TRANSPORT_ERRORS as err:
            self._forget(target)
            raise SSHUnreachableError(
                f"connection to {target} in lab {self.lab} dropped while running `{command[:80]}`: "
                f"{getattr(err, 'reason', None) or type(err).__name__}",
                lab=self.lab,
                host=target,
            ) from None

    async def _start(self, target: Target, command: str) -> asyncssh.SSHClientProcess[str]:
        # A drop noticed while opening the channel means the command never started: safe to reconnect and retry.
        for attempt in (1, 2):
            conn = await self.connection(target)
            try:
                return await asyncio.wait_for(
                    conn.create_process(command, stdin=asyncssh.DEVNULL, encoding="utf-8", errors="replace"),
                    timeout=self._connect_timeout,
                )
            except (*_TRANSPORT_ERRORS, asyncssh.ChannelOpenError, TimeoutError) as err:
                self._forget(target)
                if attempt == 2:
                    raise SSHUnreachableError(
                        f"cannot open a session on {target} in lab {self.lab}: {type(err).__name__}",
                        lab=self.lab,
                        host=target,
                    ) from None
                log.info("ssh session open failed; reconnecting lab=%s host=%s", self.lab, target)
        raise AssertionError("unreachable")

    # --- commands --------------------------------------------------------------------------------------------

    async def run(
        self,
        target: Target,
        command: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the agreed interface; the command's own budget, not a caller cancel
        check: bool = True,
        on_line: LineCallback | None = None,
        max_output: int = MAX_OUTPUT_CHARS,
    ) -> CommandResult:
        """Run a shell command on ``target``; stream its output lines to ``on_line``; return status and output.

        ``timeout`` bounds the whole call: opening the session, the command and all of its output, however it
        is paced; after a timeout the connection gets up to ``LIVENESS_TIMEOUT`` more seconds to prove it is
        alive (else it is dropped). Values in ``command`` must have been validated and quoted (``services.shell``).
        Raises
        ``SSHCommandError`` on a non-zero exit when ``check``, ``SSHTimeoutError`` (with partial output) after
        ``timeout`` seconds, ``SSHOutputLimitError`` once stdout and stderr together pass ``max_output``
        characters (the command is closed, whatever ``check`` says: its outcome is unknown),
        ``SSHUnreachableError`` if the connection cannot be made or drops.
        """
        budget = OutputBudget(max_output)
        stdout, stderr = StreamCollector(budget, on_line), StreamCollector(budget, on_line)
        process: asyncssh.SSHClientProcess[str] | None = None

        async def pump(stream: asyncssh.SSHReader[str], sink: StreamCollector) -> None:
            while chunk := await stream.read(READ_CHUNK):
                await sink.feed(chunk)
            await sink.finish()

        try:
            async with asyncio.timeout(timeout):
                process = await self._start(target, command)
                with self._transport_errors(target, command):
                    await _gather_all(pump(process.stdout, stdout), pump(process.stderr, stderr))
                    await process.wait_closed()
        except TimeoutError:
            await self._drop_if_dead(target)
            raise SSHTimeoutError(
                lab=self.lab, host=target, command=command, timeout=timeout, stdout=stdout.text(),
                stderr=stderr.text(),
            ) from None
        except OutputLimitReached:
            log.warning("ssh output over %d characters; command closed lab=%s host=%s", max_output, self.lab, target)
            raise SSHOutputLimitError(
                lab=self.lab, host=target, command=command, limit=max_output, stdout=stdout.text(),
                stderr=stderr.text(),
            ) from None
        finally:
            if process is not None:
                process.close()
        result = CommandResult(_exit_status(process), stdout.text(), stderr.text())
        log.debug("ssh run lab=%s host=%s status=%d", self.lab, target, result.exit_status)
        if check and not result.ok:
            raise SSHCommandError(
                lab=self.lab, host=target, command=command, exit_status=result.exit_status, stdout=result.stdout,
                stderr=result.stderr,
            )
        return result

    def runner(self, target: Target, *, timeout: float = 120) -> Runner:
        """A ``Runner`` for ``target`` (no exception on a non-zero exit), e.g. for the iSCSI backends."""

        async def run(command: str) -> CommandResult:
            return await self.run(target, command, timeout=timeout, check=False)

        return run

    async def wait_ready(self, target: Target, timeout: float) -> None:  # noqa: ASYNC109 - agreed interface
        """Wait until ``target``'s sshd accepts labbot's key (a booting VM refuses or resets for a while).

        A changed host key is never retried.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.25
        while True:
            try:
                await self.run(target, "true", timeout=max(self._connect_timeout, 5))
                return
            except HostKeyChangedError:
                raise
            except (SSHUnreachableError, SSHAuthError, SSHTimeoutError, SSHCommandError) as err:
                if loop.time() + delay >= deadline:
                    log.warning("ssh still not ready after %gs lab=%s host=%s", timeout, self.lab, target)
                    raise
                log.debug("ssh not ready lab=%s host=%s: %s", self.lab, target, type(err).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # --- files and ports ----------------------------------------------------------------------------------

    async def upload(self, target: Target, local: Path, remote: str, mode: int = 0o644, *,
                     timeout: float = 900) -> bool:  # noqa: ASYNC109 - the transfer's own budget
        """Copy a local file to ``remote`` (absolute path) over SFTP, atomically; skip it if already identical.

        Returns whether bytes were transferred. The SFTP transfer must end within ``timeout`` seconds
        (``SSHTimeoutError``): a VM that acknowledges slower and slower cannot hold the step forever.
        """
        shell.safe_path(remote, absolute=True)
        digest, size = await asyncio.to_thread(_sha256, local)
        existing = await self.run(target, f"sha256sum {shell.quote(remote)} 2>/dev/null", timeout=60, check=False)
        if existing.ok and existing.stdout.split()[:1] == [digest]:
            await self.run(target, f"chmod {mode:o} {shell.quote(remote)}", timeout=30)
            log.info("upload skipped (identical) lab=%s host=%s path=%s", self.lab, target, remote)
            return False
        partial = remote + ".labbot-part"
        conn = await self.connection(target)
        try:
            with self._transport_errors(target, f"sftp put {remote}"):
                async with asyncio.timeout(timeout), conn.start_sftp_client() as sftp:
                    await sftp.makedirs(posixpath.dirname(remote) or "/", exist_ok=True)
                    await sftp.put(str(local), partial)
                    await sftp.chmod(partial, mode)
                    await sftp.posix_rename(partial, remote)
        except TimeoutError:
            await self._drop_if_dead(target)
            raise SSHTimeoutError(lab=self.lab, host=target, command=f"sftp put {remote}", timeout=timeout) from None
        except (asyncssh.SFTPError, OSError) as err:
            raise SSHError(
                f"upload of {local.name} to {target}:{remote} in lab {self.lab} failed: {err}",
                lab=self.lab,
                host=target,
            ) from None
        log.info("uploaded lab=%s host=%s path=%s bytes=%d", self.lab, target, remote, size)
        return True

    async def forward_local(self, target: Target, remote_port: int, remote_host: str = "127.0.0.1") -> int:
        """Listen on a free 127.0.0.1 port that leads to ``remote_host:remote_port`` as seen from ``target``.

        The port stays the same for the session's life; each new TCP connection uses the current SSH
        connection, so the forward keeps working after a drop (connections open at the time are lost).
        """
        shell.port(remote_port)

        async def open_channel() -> tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]:
            for attempt in (1, 2):
                conn = await self.connection(target)
                try:
                    return await conn.open_connection(remote_host, remote_port)
                except _TRANSPORT_ERRORS:
                    self._forget(target)
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

        forward = LocalForward(open_channel, f"lab={self.lab} host={target} -> {remote_host}:{remote_port}")
        port = await forward.start()
        self._forwards.append(forward)
        return port

    async def close(self) -> None:
        """Stop forwards and close both connections (VM2 first, its tunnel second)."""
        self._closed = True
        for forward in self._forwards:
            await forward.close()
        self._forwards.clear()
        for target in ("vm2", "vm1"):
            conn = self._conns.pop(target, None)
            if conn is not None:
                conn.close()
                with contextlib.suppress(Exception):
                    await conn.wait_closed()


async def _gather_all(*readers: Coroutine[Any, Any, None]) -> None:
    """Run the readers together; the first failure (a drop, the output limit) stops the others too."""
    tasks = [asyncio.ensure_future(reader) for reader in readers]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _exit_status(process: asyncssh.SSHClientProcess[str]) -> int:
    if process.exit_status is not None and process.exit_status >= 0:
        return process.exit_status
    if process.exit_signal:
        name = process.exit_signal[0]
        with contextlib.suppress(KeyError):
            return 128 + signal.Signals[f"SIG{name}"].value
    return 255


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
