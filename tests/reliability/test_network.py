"""Network faults on the real pipeline: SSH cut mid-step, a misbehaving lab platform API, database connections
killed under labbot.

labbot (the Runtime) runs in the test process here, beside the outer simulator. Each fault is injected while
the step it targets is running (seen in the steps table). The lab must end ready, either on its own (the step's
retry policy) or after it failed with a clear reason and ``/lab retry`` finished it; the outer platform must
hold exactly the lab's two VMs and one data volume, and the nested ZStack one of each resource the build makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from config.settings import load_settings
from sandbox.zstack_sim.faults import Faults
from services.labs.models import LabState
from services.labs.notifier import RecordingNotifier
from services.labs.runtime import Runtime
from services.labs.service import Actor
from services.scheduler.election import asyncpg_dsn
from tests.reliability.conftest import soak_rounds, soak_seed
from tests.reliability.driver import (
    BUILD_STEPS,
    PROFILES,
    Platform,
    cut_ssh,
    lab_row,
    nested_duplicates,
    nested_inventory,
    platform,
    platform_problems,
    role_uuid,
    sshd_sessions,
    step_report,
    until,
    wait_running,
)

# Each test builds a lab for real: ~30 s on a quiet machine, several times that on a busy one.
pytestmark = [pytest.mark.sandbox, pytest.mark.postgres, pytest.mark.timeout(600)]

OWNER = Actor("U_NETWORK")
LATENCY = 0.05
NESTED_LATENCY = 0.03


@dataclass
class Outcome:
    """How a lab got to ready: on its own, or through failures (with their reasons) and retries."""

    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


@contextlib.asynccontextmanager
async def labbot(box: Platform, pg_url: str, state_dir: Path) -> AsyncIterator[Runtime]:
    settings = load_settings(database_url=pg_url, state_dir=state_dir, platform_url=box.sim.url,
                             default_profile="sandbox", lease_seconds=10, scheduler_enabled=False)
    runtime = Runtime(settings, profiles=PROFILES, notifiers=[RecordingNotifier()], engine_poll_interval=0.5)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def build_to_ready(rt: Runtime, name: str, *, retries: int = 3, timeout: float = 120,
                         before_retry: Callable[[], None] | None = None) -> Outcome:
    """Wait for the lab to settle; a failed lab must name its step and reason, then ``/lab retry`` runs it."""
    started = time.monotonic()
    outcome = Outcome()
    view = await rt.service.status(name)
    for _ in range(retries + 1):
        async def settled() -> str | None:
            state = (await lab_row(rt.sessions, view.id)).state
            return state if state in (LabState.READY, LabState.FAILED) else None

        state = await until(settled, f"lab {name} settled", timeout=timeout)
        if state == LabState.READY:
            outcome.seconds = time.monotonic() - started
            return outcome
        lab = await lab_row(rt.sessions, view.id)
        assert lab.failed_step in BUILD_STEPS and lab.error, f"a failure must say where and why: {lab.error!r}"
        assert "Traceback" not in lab.error
        outcome.failures.append(f"{lab.failed_step}: {lab.error}")
        if before_retry is not None:
            before_retry()
        await rt.service.retry(OWNER, name)
    pytest.fail(f"lab {name} still failing after {retries} retries: {outcome.failures}")


async def running_or_retry(rt: Runtime, lab_id: int, name: str, step: str, failures: list[str],
                           timeout: float = 90) -> bool:
    """Wait until ``step`` runs; a lab that failed meanwhile (with its reason) is retried. False if the step
    finished unseen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lab = await lab_row(rt.sessions, lab_id)
        if lab.state == LabState.FAILED:
            assert lab.failed_step in BUILD_STEPS and lab.error and "Traceback" not in lab.error
            failures.append(f"{lab.failed_step}: {lab.error}")
            await rt.service.retry(OWNER, name)
            continue
        state = (await step_report(rt.sessions, lab_id)).get(step, ("pending",))[0]
        if state in ("running", "done"):
            return state == "running"
        await asyncio.sleep(0.01)
    pytest.fail(f"{step} of {name} never ran within {timeout}s: {await step_report(rt.sessions, lab_id)}")


async def assert_nothing_duplicated(box: Platform, rt: Runtime, name: str) -> None:
    view = await rt.service.status(name)
    lab = await lab_row(rt.sessions, view.id)
    assert platform_problems(box.sim, {lab.name: lab.uuid}) == []
    password = rt.box.decrypt(lab.nested_password_enc or "").get_secret_value()
    assert nested_duplicates(await nested_inventory(box.config, role_uuid(lab.uuid, "vm2"), password)) == []


async def test_ssh_cuts_and_database_connections_killed_mid_build(pg_url: str, state_dir: Path) -> None:
    """One lab: labbot's PostgreSQL backends terminated while the VMs are created, VM1's SSH connections reset
    during the iSCSI configuration and dropped silently during the ZStack install, the backends terminated again
    while the nested storage is added."""
    async with platform("ssh", latency_scale=LATENCY, nested_latency=NESTED_LATENCY) as box, \
            labbot(box, pg_url, state_dir) as rt:
        view = await rt.service.create(OWNER, name="ssh-pg")
        lab_uuid = (await lab_row(rt.sessions, view.id)).uuid
        vm1 = role_uuid(lab_uuid, "vm1")
        cuts: dict[str, int] = {}
        terminated: dict[str, int] = {}
        early: list[str] = []  # failures (with their retries) while the faults are being injected
        assert await running_or_retry(rt, view.id, "ssh-pg", "create_vms", early)
        terminated["create_vms"] = await _terminate_backends(pg_url)
        for step in ("iscsi_target", "install_zstack"):
            assert await running_or_retry(rt, view.id, "ssh-pg", step, early), f"{step} finished unseen"

            async def inside(step: str = step) -> bool:
                # Inside the step's SSH work: the install once its log streams, iSCSI once it is connected.
                report = await step_report(rt.sessions, view.id)
                streaming = step != "install_zstack" or report[step][3] is not None
                return report[step][0] == "running" and streaming and bool(sshd_sessions(box.config, vm1))

            await until(inside, f"{step} working over SSH", timeout=60, interval=0.02)
            # iSCSI: the connection reset at once; the install: a silent drop (no FIN, no answer).
            cuts[step] = cut_ssh(box.config, vm1, reset=step == "iscsi_target")
        # The silent drop is noticed only when a command on the dead connection times out (up to a minute on a
        # loaded machine, then the step's retries), so the nested storage may start well after the install.
        if await running_or_retry(rt, view.id, "ssh-pg", "nested_storage", early, timeout=300):
            terminated["nested_storage"] = await _terminate_backends(pg_url)
        outcome = await build_to_ready(rt, "ssh-pg")
        outcome.failures[:0] = early
        assert all(cuts.values()), f"no SSH connection was open to cut: {cuts}"
        assert terminated["create_vms"], "labbot held no database connection to kill"
        report = await step_report(rt.sessions, view.id)
        await assert_nothing_duplicated(box, rt, "ssh-pg")
        print(f"\nSSH cuts {cuts}, PostgreSQL backends terminated {terminated}; failures {outcome.failures}; "
              f"steps (state, attempts, seconds) { {k: v[:3] for k, v in report.items()} }")


async def test_platform_api_503s_then_drops_and_slow_polls(pg_url: str, state_dir: Path) -> None:
    """The first two mutating calls (both VM creates) answer 503 SYS.1006, which is not transient: the step
    fails with that reason. The retry then runs with half of all requests dropped (before or after the simulator
    acted) until four were, and every job poll held back 0.5 s: the client's own retries must neither fail the
    lab again nor create anything twice."""
    async with platform("api", latency_scale=LATENCY, nested_latency=NESTED_LATENCY) as box, \
            labbot(box, pg_url, state_dir) as rt:
        seed = random.randrange(1 << 30)  # printed, so a failing run can be replayed
        refusals = Faults(fail_rate=1.0, methods=frozenset({"POST", "PUT", "DELETE"}), budget=2)
        drops = Faults(drop_rate=0.5, drop_phase="random", slow_poll=0.5, budget=4, seed=seed)
        box.sim.sim.faults = refusals

        def then_drops() -> None:
            box.sim.sim.faults = drops

        await rt.service.create(OWNER, name="api-faults")
        outcome = await build_to_ready(rt, "api-faults", before_retry=then_drops)
        box.sim.faults.set(drop_rate=0.0, slow_poll=0.0)  # (``clear`` would also reset the spent budget)
        # Both VM creates go out together; the second may still be on its way when the first one's 503 ends the
        # step, and then reaches the platform after the swap.
        assert refusals.budget in (0, 1) and drops.budget == 0, f"faults left unspent (seed {seed})"
        assert len(outcome.failures) == 1, f"seed {seed}: {outcome.failures}"
        assert outcome.failures[0].startswith("create_vms: ") and "SYS.1006" in outcome.failures[0]
        await assert_nothing_duplicated(box, rt, "api-faults")
        print(f"\nplatform API (seed {seed}): {2 - (refusals.budget or 0)} refused, 4 dropped; failures "
              f"{outcome.failures}; ready in {outcome.seconds:.1f}s; CreateVmInstance executed "
              f"{box.sim.state.executed('CreateVmInstance')}x")


@pytest.mark.soak
@pytest.mark.timeout(0)  # as long as SOAK_ROUNDS takes
async def test_soak_network_faults(pg_url: str, state_dir: Path) -> None:
    """Rounds of one lab each under a random mix: 503s, drops, slow polls, SSH cuts, database kills."""
    rounds, seed = soak_rounds(5), soak_seed()
    rng = random.Random(seed)
    tally: dict[str, int] = {}
    async with platform("netsoak", latency_scale=LATENCY, nested_latency=NESTED_LATENCY) as box, \
            labbot(box, pg_url, state_dir) as rt:
        for number in range(rounds):
            name = f"net{number}"
            faults = Faults(fail_rate=rng.choice([0.0, 0.05, 0.1]), drop_rate=rng.choice([0.0, 0.05, 0.1]),
                            slow_poll=rng.choice([0.0, 0.3]), seed=rng.randrange(1 << 30))
            box.sim.sim.faults = faults
            view = await rt.service.create(OWNER, name=name)
            lab_uuid = (await lab_row(rt.sessions, view.id)).uuid
            for step in rng.sample(["iscsi_target", "install_zstack", "create_vms", "nested_storage"], 2):
                if await wait_running(rt.sessions, view.id, step, timeout=120):
                    if step in ("iscsi_target", "install_zstack"):
                        tally["ssh_cut"] = tally.get("ssh_cut", 0) + cut_ssh(box.config, role_uuid(lab_uuid, "vm1"),
                                                                            reset=rng.random() < 0.5)
                    else:
                        tally["pg_kill"] = tally.get("pg_kill", 0) + await _terminate_backends(pg_url)
            outcome = await build_to_ready(rt, name, retries=8, timeout=180)
            box.sim.faults.clear()
            tally["failures"] = tally.get("failures", 0) + len(outcome.failures)
            await assert_nothing_duplicated(box, rt, name)
            await rt.service.destroy(OWNER, name)
            await until(partial(_destroyed, rt, view.id), f"{name} destroyed (seed {seed})", timeout=120)
        assert platform_problems(box.sim, {}) == [], f"seed {seed}"
        print(f"\nnetwork soak (seed {seed}): {rounds} rounds; {tally}")


async def _destroyed(rt: Runtime, lab_id: int) -> bool:
    return (await lab_row(rt.sessions, lab_id)).state == LabState.DESTROYED


async def _terminate_backends(pg_url: str) -> int:
    """pg_terminate_backend on every other session of the test's database: a restart, as labbot sees it."""
    conn = await asyncpg.connect(asyncpg_dsn(pg_url))
    try:
        return int(await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    finally:
        await conn.close()
