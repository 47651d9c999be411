"""Process death: labbot killed with SIGKILL inside every step of a build and during a destroy, then restarted.

labbot runs as ``labbot worker`` (a separate process on PostgreSQL); the lab platform (outer simulator with the
lab-in-a-box's hooks) runs in the test process and survives every kill. A kill is aimed at a step by watching
the steps table and fired while that step is ``running``; what the database still says is running after the
process died is what the kill interrupted. After the restart every lab must end as asked (ready, then
destroyed), with no duplicated and no leaked VM or volume on the platform and nothing left on the machine.

``make test`` runs one kill per step plus two in the destroy; ``make soak`` runs randomized rounds
(``SOAK_ROUNDS``), some of which wait for the dead process's lease to run out for real.
"""

from __future__ import annotations

import asyncio
import random
import time
from functools import partial
from pathlib import Path

import pytest

from services import db
from services.labs.models import LabState
from services.labs.notifier import RecordingNotifier
from services.labs.service import Actor, LabService
from tests.reliability.conftest import soak_rounds, soak_seed
from tests.reliability.driver import (
    BUILD_STEPS,
    PROFILES,
    KillRecord,
    Labbot,
    Platform,
    Sessions,
    kill_and_restart,
    lab_row,
    machine_problems,
    platform,
    platform_problems,
    role_uuid,
    service_settings,
    step_attempts,
    step_states,
    until,
    wait_running,
    worker_env,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres]

# Scaled latencies: the outer platform's VM boots and the nested node's host/storage/image calls take tenths
# of seconds, so every step lasts long enough to be caught running, and a lab still builds in ~15 s.
LATENCY = 0.05
NESTED_LATENCY = 0.03
OWNER = Actor("U_RELIABILITY")
# The shortest steps made a little longer (nominal seconds, times LATENCY): ``prepare`` is a handful of catalogue
# queries and ``attach_volume`` two quick calls, over in a few milliseconds otherwise.
SLOWER = {"QueryImage": 4.0, "QueryInstanceOffering": 4.0, "CreateDataVolume": 8.0}


async def _state(sessions: Sessions, lab_id: int) -> str:
    return (await lab_row(sessions, lab_id)).state


async def _settled(sessions: Sessions, lab_id: int, *states: LabState) -> str | None:
    state = await _state(sessions, lab_id)
    return state if state in states else None


async def _kill_during_destroy(box: Platform, labbot: Labbot, sessions: Sessions, lab_id: int, lab_uuid: str,
                               point: str, *, wait_lease: bool = False) -> KillRecord:
    """Kill at one point of a destroy: ``claimed`` (the worker took it), ``vm2-gone`` (half torn down)."""
    vm1, vm2 = role_uuid(lab_uuid, "vm1"), role_uuid(lab_uuid, "vm2")
    if point == "claimed":
        async def claimed() -> bool:
            lab = await lab_row(sessions, lab_id)
            return lab.state == LabState.DESTROYING and lab.lease_owner is not None

        await until(claimed, "the destroy claimed by labbot", timeout=60, interval=0.01)
    else:
        async def half_gone() -> bool:
            return box.sim.state.get("vm", vm2) is None and box.sim.state.get("vm", vm1) is not None

        await until(half_gone, "VM2 expunged while VM1 is still there", timeout=60, interval=0.005)
    return await kill_and_restart(labbot, sessions, [lab_id], f"destroy:{point}", wait_lease=wait_lease)


def _failure(labbot: Labbot, what: str) -> str:
    return f"{what}\n{labbot.log_tail()}"


@pytest.mark.timeout(900)  # ~1.5 min on a quiet machine; a machine busy with other suites takes several
async def test_kill_inside_every_build_step_and_the_destroy(pg_url: str, state_dir: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    async with platform("kill", latency_scale=LATENCY, nested_latency=NESTED_LATENCY, durations=SLOWER) as box:
        engine = db.make_engine(pg_url)
        sessions = db.make_sessionmaker(engine)
        service = LabService(sessions=sessions, settings=service_settings(pg_url, box.sim.url), profiles=PROFILES,
                             notifier=RecordingNotifier())
        labbot = Labbot(worker_env(pg_url, box.sim.url, state_dir), tmp_path)
        try:
            await labbot.start()
            kills: list[KillRecord] = []
            missed = list(BUILD_STEPS)
            rows = []
            hit: dict[int, set[str]] = {}
            # A kill that lands just after its step finished interrupts nothing; the steps it missed are aimed at
            # again in another lab (rarely needed: the scaled latencies keep every step running for a while).
            for number in range(3):
                if not missed:
                    break
                lab = await service.create(OWNER, name=f"kill-every-step-{number}")
                for step in missed:
                    if await wait_running(sessions, lab.id, step, timeout=90):
                        kills.append(await kill_and_restart(labbot, sessions, [lab.id], step))
                        hit.setdefault(lab.id, set()).update(kills[-1].interrupted)
                state = await until(partial(_settled, sessions, lab.id, LabState.READY, LabState.FAILED),
                                    "the lab built after the kills", timeout=120)
                error = (await lab_row(sessions, lab.id)).error
                assert state == LabState.READY, _failure(labbot, f"lab ended {state}: {error}")
                row = await lab_row(sessions, lab.id)
                assert row.summary and row.iscsi_wwid and row.nested_ids
                rows.append(row)
                interrupted = {name for k in kills for name in k.interrupted}
                missed = [s for s in BUILD_STEPS if s not in interrupted]
                assert platform_problems(box.sim, {r.name: r.uuid for r in rows}) == []

            assert missed == [], f"steps never interrupted: {missed}"
            for built in rows:  # every interrupted step really ran again
                attempts = await step_attempts(sessions, built.id)
                assert all(attempts[s] >= 2 for s in hit.get(built.id, ())), attempts
            attempts = await step_attempts(sessions, rows[0].id)
            for extra in rows[1:]:
                await service.destroy(OWNER, extra.name)
            row = rows[0]

            await service.destroy(OWNER, row.name)
            kills.append(await _kill_during_destroy(box, labbot, sessions, row.id, row.uuid, "claimed"))
            kills.append(await _kill_during_destroy(box, labbot, sessions, row.id, row.uuid, "vm2-gone"))
            for gone in rows:
                state = await until(partial(_settled, sessions, gone.id, LabState.DESTROYED, LabState.FAILED),
                                    "the labs destroyed after the kills", timeout=90)
                assert state == LabState.DESTROYED, _failure(labbot, f"destroy ended {state}")
            assert platform_problems(box.sim, {}) == []
            assert await machine_problems(box.config, set()) == []
            print(f"\nprocess death: {labbot.kills} kills ({', '.join(k.target for k in kills)}); "
                  f"{len(rows)} lab(s); attempts of the first {attempts}; CreateVmInstance executed "
                  f"{box.sim.state.executed('CreateVmInstance')}x; {time.monotonic() - started:.0f}s")
        finally:
            await labbot.close()
            await engine.dispose()


@pytest.mark.soak
@pytest.mark.timeout(0)  # as long as SOAK_ROUNDS takes
async def test_soak_random_kills(pg_url: str, state_dir: Path, tmp_path: Path) -> None:
    """Rounds of two labs built side by side, labbot killed at random moments of their builds and destroys.

    Every third round lets the dead process's leases run out for real (10 s) instead of expiring them.
    """
    rounds, seed = soak_rounds(5), soak_seed()
    rng = random.Random(seed)
    per_step: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    total_kills = 0
    async with platform("soak", latency_scale=LATENCY, nested_latency=NESTED_LATENCY, durations=SLOWER) as box:
        engine = db.make_engine(pg_url)
        sessions = db.make_sessionmaker(engine)
        service = LabService(sessions=sessions, settings=service_settings(pg_url, box.sim.url), profiles=PROFILES,
                             notifier=RecordingNotifier())
        labbot = Labbot(worker_env(pg_url, box.sim.url, state_dir), tmp_path)
        try:
            await labbot.start()
            for number in range(rounds):
                slow = number % 3 == 2
                labs = [await service.create(OWNER, name=f"soak{number}-{i}") for i in range(2)]
                ids = [lab.id for lab in labs]
                for _ in range(rng.randint(1, 4)):
                    # A random step the first lab still has to run, hit at a random moment inside it.
                    states = await until(lambda: step_states(sessions, ids[0]), "the build's steps recorded",
                                         timeout=60, interval=0.02)
                    left = [n for n, st in states.items() if st != "done"]
                    if not left:
                        break
                    target = rng.choice(left)
                    if not await wait_running(sessions, ids[0], target, timeout=90):
                        continue
                    await asyncio.sleep(rng.uniform(0.0, 0.4))
                    record = await kill_and_restart(labbot, sessions, ids, target, wait_lease=slow)
                    total_kills += 1
                    for name in record.interrupted:
                        per_step[name] = per_step.get(name, 0) + 1
                for lab_id in ids:
                    state = await until(partial(_settled, sessions, lab_id, LabState.READY, LabState.FAILED),
                                        f"round {number} (seed {seed}) labs built", timeout=180)
                    outcomes[state] = outcomes.get(state, 0) + 1
                    assert state == LabState.READY, _failure(labbot, f"seed {seed} round {number}: {state}")
                rows = [await lab_row(sessions, i) for i in ids]
                assert platform_problems(box.sim, {r.name: r.uuid for r in rows}) == [], f"seed {seed}"

                for row in rows:
                    await service.destroy(OWNER, row.name)
                point = rng.choice(["claimed", "vm2-gone", "none"])
                if point != "none":
                    await _kill_during_destroy(box, labbot, sessions, ids[0], rows[0].uuid, point, wait_lease=slow)
                    total_kills += 1
                    per_step[f"destroy:{point}"] = per_step.get(f"destroy:{point}", 0) + 1
                for lab_id in ids:
                    state = await until(partial(_settled, sessions, lab_id, LabState.DESTROYED, LabState.FAILED),
                                        f"round {number} (seed {seed}) labs destroyed", timeout=120)
                    assert state == LabState.DESTROYED, _failure(labbot, f"seed {seed} round {number}: destroy {state}")
                    outcomes["destroyed"] = outcomes.get("destroyed", 0) + 1
                assert platform_problems(box.sim, {}) == [], f"seed {seed}"
                assert await machine_problems(box.config, set()) == [], f"seed {seed}"
            print(f"\nsoak (seed {seed}): {rounds} rounds, {total_kills} kills; interrupted steps {per_step}; "
                  f"outcomes {outcomes}")
        finally:
            await labbot.close()
            await engine.dispose()

