"""LabSSH against real sshd in the lab-in-a-box: VM2 only through VM1, pinning, drops, uploads, forwards."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox import sshd
from services.ssh import (
    HostAddress,
    HostKeyChangedError,
    LabSSH,
    MemoryHostKeyStore,
    SSHAuthError,
    SSHCommandError,
    SSHTimeoutError,
    SSHUnreachableError,
    generate_keypair,
)
from services.ssh.keys import fingerprint
from tests.sandbox.labbox import VM2_ROOT_PASSWORD, Lab, LabBox, drop_connections, require_sandbox, sshd_children

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def box() -> Iterator[LabBox]:
    require_sandbox()
    box = LabBox("ssh")
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def lab(box: LabBox) -> Lab:
    return box.run(box.make_lab("sshlab", volume_size=64 * 1024**2))


def host_key(box: LabBox, vm_uuid: str) -> str:
    return (box.config.vm_dir(vm_uuid) / "ssh" / f"{sshd.HOST_KEY}.pub").read_text().strip()


async def test_vm2_is_reached_through_vm1_and_not_directly(lab: Lab) -> None:
    async with lab.ssh() as ssh:
        result = await ssh.run("vm2", "hostname; echo $SSH_CONNECTION", timeout=10)
    hostname, connection = result.stdout.splitlines()
    assert hostname == "sshlab-vm2"
    assert connection.split()[0] == lab.vm1_vpc_ip  # the SSH client VM2 sees is VM1
    with pytest.raises((OSError, TimeoutError)):
        await asyncio.wait_for(asyncio.open_connection(lab.vm2_ip, 22), 2)
    direct = LabSSH("sshlab", vm1=HostAddress(lab.vm2_ip), vm2=None, username="root", key=lab.key,
                    host_keys=MemoryHostKeyStore(), connect_timeout=2)
    async with direct:
        with pytest.raises(SSHUnreachableError, match="cannot connect to vm1"):
            await direct.run("vm1", "true", timeout=5)


async def test_run_streams_lines_and_reports_exit_status(lab: Lab) -> None:
    lines: list[str] = []

    async def on_line(line: str) -> None:
        lines.append(line)

    async with lab.ssh() as ssh:
        result = await ssh.run("vm1", "echo one; echo two >&2; printf three; exit 3", timeout=10, check=False,
                               on_line=on_line)
        assert (result.exit_status, result.stdout, result.stderr) == (3, "one\nthree", "two\n")
        assert sorted(lines) == ["one", "three", "two"]
        with pytest.raises(SSHCommandError) as caught:
            await ssh.run("vm1", "echo partial; echo broken >&2; exit 4", timeout=10)
    error = caught.value
    assert (error.exit_status, error.stderr_tail, error.stdout_tail) == (4, "broken", "partial")
    assert "exited with status 4" in error.user_message and error.system == "ssh"


async def test_a_timeout_keeps_partial_output_and_the_session_stays_usable(lab: Lab) -> None:
    async with lab.ssh() as ssh:
        first = await ssh.connection("vm1")
        started = asyncio.get_running_loop().time()
        with pytest.raises(SSHTimeoutError) as caught:
            await ssh.run("vm1", "echo started; sleep 30", timeout=1)
        assert asyncio.get_running_loop().time() - started < 5
        assert caught.value.stdout == "started\n" and "did not finish within 1s" in caught.value.message
        assert (await ssh.run("vm1", "echo still here", timeout=10)).stdout == "still here\n"
        assert await ssh.connection("vm1") is first  # a slow command is not a dead connection


def sshd_session_trees(box: LabBox, lab: Lab) -> list[int]:
    """Every process serving labbot's SSH connections to the lab: VM1's per-connection sshd processes and below."""
    roots = set(sshd_children(box, lab.vm1))
    tree: set[int] = set()
    while roots:
        tree |= roots
        roots = {pid for pid in _all_pids() if _parent(pid) in roots} - tree
    return sorted(tree)


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


async def test_a_timeout_on_a_silently_dropped_connection_drops_it(box: LabBox, lab: Lab) -> None:
    # A connection whose far end stopped without closing (a frozen VM, a half-dead sshd) would time out every
    # later command too; the timeout must leave the next command a fresh connection.
    async with lab.ssh(keepalive_interval=3600) as ssh:  # keepalives would notice too, but far later
        await ssh.run("vm2", "true", timeout=10)
        first = await ssh.connection("vm1")
        frozen = sshd_session_trees(box, lab)
        assert frozen
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(SSHTimeoutError):
                await ssh.run("vm2", "echo lost", timeout=2)
            # The old connection is still open and frozen; the next command must not be sent down it.
            assert (await ssh.run("vm2", "echo back", timeout=15)).stdout == "back\n"
            assert await ssh.connection("vm1") is not first
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGKILL)


async def test_host_keys_are_pinned_on_first_use(box: LabBox, lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = MemoryHostKeyStore()
    async with lab.ssh(store) as ssh:
        await ssh.run("vm2", "true", timeout=10)
    assert "pinned ssh host key lab=sshlab host=vm2 fingerprint=SHA256:" in caplog.text
    private_body = "".join(lab.key.private_openssh.get_secret_value().splitlines()[1:-1])
    assert private_body[:40] not in caplog.text.replace("\n", "")  # connection logs carry no key material
    assert store.keys[("sshlab", "vm1")] == host_key(box, lab.vm1.vm_uuid).rsplit(" ", 1)[0]
    assert store.keys[("sshlab", "vm2")] == host_key(box, lab.vm2.vm_uuid).rsplit(" ", 1)[0]
    async with lab.ssh(store) as ssh:  # the pinned keys are accepted
        assert (await ssh.run("vm2", "echo ok", timeout=10)).stdout == "ok\n"


async def test_a_different_key_is_refused_as_possible_interception(lab: Lab) -> None:
    impostor = generate_keypair().public_openssh  # what an earlier, different VM1 presented
    store = MemoryHostKeyStore()
    await store.pin("sshlab", "vm1", impostor)
    events: list[tuple[str, str, str, str]] = []

    async def on_key_changed(lab_id: str, host: str, old: str, new: str) -> None:
        events.append((lab_id, host, old, new))

    async with lab.ssh(store, on_key_changed=on_key_changed) as ssh:
        with pytest.raises(HostKeyChangedError) as caught:
            await ssh.run("vm1", "true", timeout=10)
    error = caught.value
    assert events == [("sshlab", "vm1", fingerprint(impostor), error.new_fingerprint)]
    assert "possible interception" in error.message and fingerprint(impostor) in error.message
    assert impostor.split()[1] not in error.message  # fingerprints only, never key material
    assert await store.get("sshlab", "vm1") == impostor  # the pin is not replaced


class FirstPinRace(MemoryHostKeyStore):
    """A store in which another connection pins ``impostor`` between this connection's read and its pin."""

    def __init__(self, impostor: str) -> None:
        super().__init__()
        self.impostor = impostor
        self.reads = 0

    async def get(self, lab: str, host: str) -> str | None:
        self.reads += 1
        pinned = await super().get(lab, host)
        if pinned is None:
            self.keys[(lab, host)] = self.impostor  # lands after this read, before this connection's pin
        return pinned


async def test_a_concurrent_first_pin_of_another_key_is_refused(lab: Lab) -> None:
    impostor = generate_keypair().public_openssh
    store = FirstPinRace(impostor)
    async with lab.ssh(store) as ssh:
        with pytest.raises(HostKeyChangedError) as caught:
            await ssh.run("vm1", "true", timeout=10)
    assert caught.value.old_fingerprint == fingerprint(impostor)
    assert store.keys[("sshlab", "vm1")] == impostor  # the first pin stays


async def test_a_session_reads_each_pin_once_however_often_it_reconnects(box: LabBox, lab: Lab) -> None:
    store = FirstPinRace("unused")
    await store.pin("sshlab", "vm1", host_key(box, lab.vm1.vm_uuid))
    await store.pin("sshlab", "vm2", host_key(box, lab.vm2.vm_uuid))
    async with lab.ssh(store) as ssh:
        for _ in range(2):
            assert (await ssh.run("vm2", "echo ok", timeout=15)).stdout == "ok\n"
            assert await drop_connections(box, lab.vm1) >= 1
        assert (await ssh.run("vm2", "echo ok", timeout=15)).stdout == "ok\n"
    assert store.reads == 2  # vm1 and vm2, once each, over three connections to each


async def test_a_rebuilt_vm_with_a_new_host_key_is_refused(box: LabBox, lab: Lab) -> None:
    store = MemoryHostKeyStore()
    async with lab.ssh(store) as ssh:
        await ssh.run("vm2", "true", timeout=10)
    old = fingerprint(host_key(box, lab.vm2.vm_uuid))
    sshd.regenerate_host_key(box.config.vm_dir(lab.vm2.vm_uuid) / "ssh")
    await box.hooks.vm_started(lab.vm2)  # reboot with the new key
    async with lab.ssh(store) as ssh:
        assert (await ssh.run("vm1", "echo vm1 unaffected", timeout=10)).ok
        with pytest.raises(HostKeyChangedError) as caught:
            await ssh.wait_ready("vm2", timeout=10)  # never retried
    assert (caught.value.host, caught.value.old_fingerprint) == ("vm2", old)
    assert caught.value.new_fingerprint == fingerprint(host_key(box, lab.vm2.vm_uuid))


async def test_reconnects_transparently_after_a_drop(box: LabBox, lab: Lab) -> None:
    async with lab.ssh() as ssh:
        await ssh.run("vm2", "true", timeout=10)
        first = await ssh.connection("vm1")
        assert await drop_connections(box, lab.vm1) >= 1  # VM2's tunnel rides on this connection too
        assert (await ssh.run("vm2", "echo back", timeout=15)).stdout == "back\n"
        assert await ssh.connection("vm1") is not first


async def test_wait_ready_waits_for_a_booting_vm(box: LabBox, lab: Lab) -> None:
    await box.hooks.vm_stopped(lab.vm2.vm_uuid)
    async with lab.ssh(connect_timeout=3) as ssh:
        waiting = asyncio.create_task(ssh.wait_ready("vm2", timeout=30))
        await asyncio.sleep(1)
        assert not waiting.done()
        await box.hooks.vm_started(lab.vm2)
        await waiting
        assert (await ssh.run("vm2", "hostname", timeout=10)).stdout == "sshlab-vm2\n"


async def test_a_refused_key_is_an_auth_error(lab: Lab) -> None:
    stranger = LabSSH("sshlab", vm1=HostAddress(lab.vm1_public_ip), vm2=None, username="root",
                      key=generate_keypair(), host_keys=MemoryHostKeyStore())
    async with stranger:
        with pytest.raises(SSHAuthError, match="refused labbot's key for user root"):
            await stranger.wait_ready("vm1", timeout=1)


async def test_upload_is_atomic_and_skipped_when_identical(lab: Lab, tmp_path: Path) -> None:
    local = tmp_path / "installer.bin"
    local.write_bytes(os.urandom(300_000))
    remote = "/root/labbot/installer.bin"
    async with lab.ssh() as ssh:
        assert await ssh.upload("vm2", local, remote, 0o750) is True
        listing = await ssh.run("vm2", f"sha256sum {remote}; stat -c %a {remote}; ls /root/labbot", timeout=10)
        digest, mode, names = listing.stdout.splitlines()[0].split()[0], *listing.stdout.splitlines()[1:]
        assert digest == hashlib.sha256(local.read_bytes()).hexdigest()
        assert (mode, names) == ("750", "installer.bin")  # no partial file left behind
        assert await ssh.upload("vm2", local, remote, 0o750) is False
        local.write_bytes(b"changed")
        assert await ssh.upload("vm2", local, remote, 0o750) is True
        assert (await ssh.run("vm2", f"cat {remote}", timeout=10)).stdout == "changed"


async def test_forward_local_reaches_vm2_and_survives_a_drop(box: LabBox, lab: Lab) -> None:
    python = box.config.nested_sim[0]
    async with lab.ssh() as ssh:
        await ssh.run(
            "vm2",
            "mkdir -p /root/www && echo hello-from-vm2 > /root/www/hello.txt && "
            f"(setsid nohup {python} -m http.server 8000 --bind 127.0.0.1 --directory /root/www "
            ">/dev/null 2>&1 < /dev/null &) && for i in $(seq 50); do "
            f"{python} -c 'import socket; socket.create_connection((\"127.0.0.1\", 8000), 1)' 2>/dev/null && break; "
            "sleep 0.1; done",
            timeout=20,
        )
        port = await ssh.forward_local("vm2", 8000)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert (await http.get("/hello.txt")).text == "hello-from-vm2\n"
            await drop_connections(box, lab.vm1)
            assert (await http.get("/hello.txt")).text == "hello-from-vm2\n"  # same port, new SSH connection


async def test_password_login_to_vm2_is_checked_through_vm1(lab: Lab) -> None:
    # What the nested ZStack's AddKVMHost will do: log in to VM2 with root's password, after the key pinned it.
    async with lab.ssh() as ssh:
        await ssh.run("vm2", "true", timeout=10)  # pins VM2's host key
        await ssh.check_password("vm2", VM2_ROOT_PASSWORD)
        with pytest.raises(SSHAuthError, match="refuses password login for root") as caught:
            await ssh.check_password("vm2", "not-" + VM2_ROOT_PASSWORD)
        assert VM2_ROOT_PASSWORD not in caught.value.message
