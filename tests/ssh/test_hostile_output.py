"""A lab VM whose owner has root makes every login print without end (a ForceCommand, as a .bashrc could).

A real OpenSSH ``sshd`` on loopback runs the owner's ForceCommand for every command labbot sends. labbot must
stop reading at its cap and say so, with memory bounded and the event loop free, and keep its deadline when
the output only drips.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from sandbox import sshd
from sandbox.system import SSHD
from services.ssh import (
    HostAddress,
    KeyPair,
    LabSSH,
    MemoryHostKeyStore,
    SSHOutputLimitError,
    SSHTimeoutError,
    generate_keypair,
)
from services.ssh.output import MAX_LINE_CHARS, MAX_OUTPUT_CHARS
from tests.sandbox.labbox import require_sandbox

pytestmark = pytest.mark.sandbox

MiB = 1024 * 1024

# The VM owner's ForceCommand: "say CMD" runs CMD (so the test can also ask for ordinary output); "drip" prints a
# byte every 50 ms; "line" prints one endless line; anything else (labbot's `true`) prints endless lines.
FORCE_COMMAND = r"""#!/bin/sh
case "$SSH_ORIGINAL_COMMAND" in
  "say "*) exec /bin/sh -c "${SSH_ORIGINAL_COMMAND#say }" ;;
  drip) while :; do printf x; sleep 0.05; done ;;
  line) exec tr '\0' x < /dev/zero ;;
  *) exec yes 'this VM greets every login with this line, again and again, without end' ;;
esac
"""


class HostileVM:
    """One sshd on 127.0.0.1 whose every session runs ``FORCE_COMMAND``."""

    def __init__(self, base: Path) -> None:
        self.key: KeyPair = generate_keypair("labbot@hostile")
        ssh_dir = base / "ssh"
        sshd.ensure_host_key(ssh_dir)
        sshd.write_authorized_keys(ssh_dir, [self.key.public_openssh])
        force = base / "force-command"
        force.write_text(FORCE_COMMAND)
        force.chmod(0o755)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = sshd.write_config(ssh_dir, listen="127.0.0.1", port=self.port)
        with config.open("a") as extra:
            extra.write(f"ForceCommand {force}\n")
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the hostile sshd did not start") from None
                time.sleep(0.05)

    def ssh(self) -> LabSSH:
        return LabSSH("hostile", vm1=HostAddress("127.0.0.1", self.port), vm2=None, username="root", key=self.key,
                      host_keys=MemoryHostKeyStore())

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileVM]:
    require_sandbox()  # root and OpenSSH's sshd, as for the lab-in-a-box
    base = tmp_path_factory.mktemp("hostile-vm")
    os.chmod(base, 0o700)
    hostile = HostileVM(base)
    try:
        yield hostile
    finally:
        hostile.close()


@asynccontextmanager
async def measured() -> AsyncIterator[dict[str, float]]:
    """The block's peak of traced Python memory (bytes) and the event loop's longest stall (seconds)."""
    figures = {"peak": 0.0, "stall": 0.0}

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            figures["stall"] = max(figures["stall"], now - last)
            last = now

    ticker = asyncio.create_task(tick())
    tracemalloc.start()
    try:
        yield figures
    finally:
        figures["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        ticker.cancel()


async def test_endless_output_for_true_stops_at_the_cap_and_says_so(vm: HostileVM) -> None:
    async with vm.ssh() as ssh:
        await ssh.connection("vm1")  # connecting is not what is measured
        started = time.monotonic()
        async with measured() as figures:
            with pytest.raises(SSHOutputLimitError) as caught:
                await ssh.run("vm1", "true", timeout=60, check=False)
        elapsed = time.monotonic() - started
        # The session is still usable for the next command.
        assert (await ssh.run("vm1", "say echo fine", timeout=30)).stdout == "fine\n"
    error = caught.value
    assert "output truncated" in str(error) and f"{MAX_OUTPUT_CHARS:,} characters" in str(error)
    assert "this VM greets every login with this line" in error.stdout_tail
    assert len(error.stdout_tail) <= 2000
    assert figures["peak"] < 8 * MAX_OUTPUT_CHARS, f"peak {figures['peak'] / MiB:.1f} MiB"
    assert figures["stall"] < 1.0, f"event loop stalled {figures['stall']:.2f}s"
    assert elapsed < 30


async def test_one_endless_line_reaches_on_line_in_bounded_pieces(vm: HostileVM) -> None:
    sizes: list[int] = []

    async def on_line(line: str) -> None:
        sizes.append(len(line))

    async with vm.ssh() as ssh, measured() as figures:
        with pytest.raises(SSHOutputLimitError):
            await ssh.run("vm1", "line", timeout=60, on_line=on_line)
    assert sizes and max(sizes) <= MAX_LINE_CHARS
    assert sum(sizes) <= MAX_OUTPUT_CHARS
    assert figures["peak"] < 8 * MAX_OUTPUT_CHARS, f"peak {figures['peak'] / MiB:.1f} MiB"


async def test_output_within_the_cap_is_kept_whole(vm: HostileVM) -> None:
    size = 3 * MiB
    async with vm.ssh() as ssh:
        result = await ssh.run("vm1", f"say head -c {size} /dev/zero | tr '\\0' a; echo done >&2", timeout=60)
    assert len(result.stdout) == size and set(result.stdout) == {"a"} and result.stderr == "done\n"


async def test_a_dripping_command_ends_at_its_deadline(vm: HostileVM) -> None:
    async with vm.ssh() as ssh:
        await ssh.connection("vm1")
        started = time.monotonic()
        with pytest.raises(SSHTimeoutError) as caught:
            await ssh.run("vm1", "drip", timeout=1.5)
        elapsed = time.monotonic() - started
    assert elapsed < 4, f"a 1.5 s command took {elapsed:.1f}s"
    assert set(caught.value.stdout) == {"x"}


async def test_wait_ready_reports_the_flood_instead_of_retrying_it(vm: HostileVM) -> None:
    async with vm.ssh() as ssh:
        with pytest.raises(SSHOutputLimitError):
            await ssh.wait_ready("vm1", timeout=120)
