"""A lab VM whose owner has root makes every login print without end (a ForceCommand, as a .bashrc could).

A real OpenSSH ``sshd`` on loopback runs the owner's ForceCommand for every command labbot sends. labbot must
stop reading at its cap and say so, with memory bounded and the event loop free, and keep its deadline when
the output only drips.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from services.ssh import SSHOutputLimitError, SSHTimeoutError
from services.ssh.detached import JOBS_ROOT, follow, start_detached
from services.ssh.output import MAX_LINE_CHARS, MAX_OUTPUT_CHARS
from tests.sandbox.labbox import require_sandbox
from tests.ssh.loopback_sshd import LoopbackSSHD

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


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSSHD]:
    require_sandbox()  # root and OpenSSH's sshd, as for the lab-in-a-box
    with LoopbackSSHD(tmp_path_factory.mktemp("hostile-vm"), force_command=FORCE_COMMAND) as hostile:
        yield hostile


@pytest.fixture(scope="module")
def plain_vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSSHD]:
    require_sandbox()
    with LoopbackSSHD(tmp_path_factory.mktemp("plain-vm")) as server:
        yield server


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


async def test_endless_output_for_true_stops_at_the_cap_and_says_so(vm: LoopbackSSHD) -> None:
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


async def test_one_endless_line_reaches_on_line_in_bounded_pieces(vm: LoopbackSSHD) -> None:
    sizes: list[int] = []

    async def on_line(line: str) -> None:
        sizes.append(len(line))

    async with vm.ssh() as ssh, measured() as figures:
        with pytest.raises(SSHOutputLimitError):
            await ssh.run("vm1", "line", timeout=60, on_line=on_line)
    assert sizes and max(sizes) <= MAX_LINE_CHARS
    assert sum(sizes) <= MAX_OUTPUT_CHARS
    assert figures["peak"] < 8 * MAX_OUTPUT_CHARS, f"peak {figures['peak'] / MiB:.1f} MiB"


async def test_output_within_the_cap_is_kept_whole(vm: LoopbackSSHD) -> None:
    size = 3 * MiB
    async with vm.ssh() as ssh:
        result = await ssh.run("vm1", f"say head -c {size} /dev/zero | tr '\\0' a; echo done >&2", timeout=60)
    assert len(result.stdout) == size and set(result.stdout) == {"a"} and result.stderr == "done\n"


async def test_a_dripping_command_ends_at_its_deadline(vm: LoopbackSSHD) -> None:
    async with vm.ssh() as ssh:
        await ssh.connection("vm1")
        started = time.monotonic()
        with pytest.raises(SSHTimeoutError) as caught:
            await ssh.run("vm1", "drip", timeout=1.5)
        elapsed = time.monotonic() - started
    assert elapsed < 4, f"a 1.5 s command took {elapsed:.1f}s"
    assert set(caught.value.stdout) == {"x"}


async def test_wait_ready_reports_the_flood_instead_of_retrying_it(vm: LoopbackSSHD) -> None:
    async with vm.ssh() as ssh:
        with pytest.raises(SSHOutputLimitError):
            await ssh.wait_ready("vm1", timeout=120)


async def test_follow_stops_reading_a_job_log_past_its_cap_and_still_waits_for_the_exit(plain_vm: LoopbackSSHD) -> None:
    batches: list[list[str]] = []

    async def on_lines(lines: list[str]) -> None:
        batches.append(lines)

    lab = f"flood{os.getpid()}"
    try:
        async with plain_vm.ssh(lab) as ssh:
            # 3 MiB of log, a pause, then more log and the exit code: only the first 1 MiB is read.
            command = "yes 'a line of the flood' | head -c 3145728; sleep 0.5; echo after the cap; exit 5"
            await start_detached(ssh, "vm1", "flood", command)
            code = await follow(ssh, "vm1", "flood", on_lines=on_lines, poll_interval=0.1, timeout=60,
                                max_log_bytes=MiB)
    finally:
        shutil.rmtree(f"{JOBS_ROOT}/{lab}", ignore_errors=True)
    lines = [line for batch in batches for line in batch]
    assert code == 5
    assert lines[-1] == "[labbot: the log passed 1,048,576 bytes; the rest of it is not read]"
    assert "after the cap" not in lines
    assert sum(len(line) + 1 for line in lines[:-1]) <= MiB + 1
