"""Detached jobs on VM2 (through VM1): they outlive the SSH connection and labbot, and are re-attached."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from services.ssh import SSHError
from services.ssh.detached import (
    DetachedJobLostError,
    cancel_job,
    follow,
    job_dir,
    job_exit_code,
    job_status,
    read_log,
    reset_job,
    start_detached,
)
from tests.sandbox.labbox import Lab, LabBox, drop_connections, require_sandbox

pytestmark = pytest.mark.sandbox

STEPS = 'for i in 1 2 3 4 5 6; do echo "step $i"; sleep 0.25; done; echo "all done" >&2; exit 7'
EXPECTED = [f"step {i}" for i in range(1, 7)] + ["all done"]


@pytest.fixture(scope="module")
def box() -> Iterator[LabBox]:
    require_sandbox()
    box = LabBox("jobs")
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def lab(box: LabBox) -> Lab:
    return box.run(box.make_lab("joblab", volume_size=1024**2))


async def test_a_job_survives_killing_the_connection_and_is_reattached(box: LabBox, lab: Lab) -> None:
    seen: list[str] = []
    two_steps = asyncio.Event()

    async def on_line(line: str) -> None:
        seen.append(line)
        if len(seen) == 2:
            two_steps.set()

    async with lab.ssh() as first:
        await start_detached(first, "vm2", "survivor", STEPS)
        watching = asyncio.create_task(follow(first, "vm2", "survivor", on_line=on_line, poll_interval=0.1,
                                              timeout=30))
        await asyncio.wait_for(two_steps.wait(), 10)
        watching.cancel()  # labbot goes away ...
        await drop_connections(box, lab.vm1)  # ... and so does every SSH connection to the lab
    assert seen[:2] == ["step 1", "step 2"]

    async with lab.ssh() as second:  # a new labbot process re-attaches by name
        await start_detached(second, "vm2", "survivor", "echo this must not run")  # already started: no-op
        replayed: list[str] = []

        async def collect(line: str) -> None:
            replayed.append(line)

        code = await follow(second, "vm2", "survivor", offset=0, on_line=collect, poll_interval=0.1, timeout=30)
        assert code == 7 and replayed == EXPECTED  # full log, each step once, never restarted
        assert await job_exit_code(second, "vm2", "survivor") == 7
        text, offset = await read_log(second, "vm2", "survivor", 0)
        assert text.splitlines() == EXPECTED and offset == len(text.encode())
        tail, end = await read_log(second, "vm2", "survivor", len("step 1\nstep 2\n"))
        assert tail.splitlines() == EXPECTED[2:] and end == offset


async def test_follow_rides_out_drops_while_the_job_runs(box: LabBox, lab: Lab) -> None:
    lines: list[str] = []

    async def collect(line: str) -> None:
        lines.append(line)

    async with lab.ssh() as ssh:
        await start_detached(ssh, "vm2", "bumpy", STEPS.replace("exit 7", "exit 0"))
        watching = asyncio.create_task(follow(ssh, "vm2", "bumpy", on_line=collect, poll_interval=0.1, timeout=30))
        for _ in range(3):
            await asyncio.sleep(0.3)
            await drop_connections(box, lab.vm1)
        assert await watching == 0
    assert lines == EXPECTED


async def test_status_of_a_job_through_its_life(lab: Lab) -> None:
    async with lab.ssh() as ssh:
        assert (await job_status(ssh, "vm2", "later")).state == "absent"
        with pytest.raises(SSHError, match="never started"):
            await follow(ssh, "vm2", "later", poll_interval=0.1, timeout=5)
        # Long enough that a loaded machine still sees it running; follow() returns when it ends anyway.
        await start_detached(ssh, "vm2", "later", "sleep 3; echo finished")
        assert (await job_status(ssh, "vm2", "later")).state == "running"
        assert await job_exit_code(ssh, "vm2", "later") is None
        assert await follow(ssh, "vm2", "later", poll_interval=0.1, timeout=10) == 0
        assert (await job_status(ssh, "vm2", "later")).exit_code == 0


async def test_a_killed_job_is_reported_lost_and_can_be_reset(lab: Lab) -> None:
    async with lab.ssh() as ssh:
        await start_detached(ssh, "vm2", "doomed", "sleep 60")
        directory = job_dir("joblab", "doomed")
        await ssh.run("vm2", f"for i in $(seq 50); do [ -s {directory}/pid ] && break; sleep 0.05; done; "
                             f"kill -KILL -- -$(cat {directory}/pid)", timeout=10)
        assert (await job_status(ssh, "vm2", "doomed")).state == "lost"
        with pytest.raises(DetachedJobLostError, match="stopped without an exit code"):
            await job_exit_code(ssh, "vm2", "doomed")
        with pytest.raises(DetachedJobLostError):
            await follow(ssh, "vm2", "doomed", poll_interval=0.1, timeout=5)
        await reset_job(ssh, "vm2", "doomed")
        await start_detached(ssh, "vm2", "doomed", "echo second life")
        assert await follow(ssh, "vm2", "doomed", poll_interval=0.1, timeout=10) == 0
        assert (await read_log(ssh, "vm2", "doomed", 0))[0] == "second life\n"


async def test_cancel_stops_the_whole_job_and_records_sigterm(lab: Lab) -> None:
    async with lab.ssh() as ssh:
        await start_detached(ssh, "vm2", "endless", "sleep 300 & sleep 301; wait")
        await asyncio.sleep(0.3)
        with pytest.raises(SSHError, match="still running"):
            await reset_job(ssh, "vm2", "endless")
        await cancel_job(ssh, "vm2", "endless")
        assert await job_exit_code(ssh, "vm2", "endless") == 143
        left = await ssh.run("vm2", f"ps -eo pgid=,args= | grep -c \"^ *$(cat {job_dir('joblab', 'endless')}/pid) \"",
                             timeout=10, check=False)
        assert left.stdout.strip() == "0"  # no process of the job's group survives


async def test_follow_times_out_with_the_last_lines_and_leaves_the_job_running(lab: Lab) -> None:
    async with lab.ssh() as ssh:
        await start_detached(ssh, "vm2", "slow", "echo begun; sleep 30")
        with pytest.raises(SSHError, match="did not finish within 1s") as caught:
            await follow(ssh, "vm2", "slow", poll_interval=0.1, timeout=1)
        assert "begun" in caught.value.message
        assert (await job_status(ssh, "vm2", "slow")).state == "running"
        await cancel_job(ssh, "vm2", "slow")


async def test_job_names_are_validated_before_reaching_the_shell(lab: Lab) -> None:
    async with lab.ssh() as ssh:
        with pytest.raises(ValueError, match="not a valid job name"):
            await start_detached(ssh, "vm2", "x; reboot", "true")

