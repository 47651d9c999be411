"""Reliability test driver: a private lab-in-a-box whose lab platform lives in the test process, and labbot as a
separate ``labbot worker`` process the tests kill with SIGKILL and start again.

The outer ZStack simulator (with the sandbox's hooks: VMs are network namespaces with real sshd and tgtd) runs
in the test's event loop, so it survives every kill of labbot and the tests can read its inventory, which is
the lab platform's truth: a VM or volume there that no live lab owns is a leak, two for one role a duplicate.
The box gets its own base dir, a name prefix no namespace on the machine uses and a public /26 in
198.18.4.0-198.18.49.255 that no host address overlaps (clear of the demo's /22 and of tests/sandbox's /24s),
so it runs beside a demo, the benchmarks or another test run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import sys
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.profiles import load_profiles
from config.settings import Settings, load_settings
from sandbox import lifecycle, system
from sandbox.config import SandboxConfig, nested_sim_command
from sandbox.hooks import OuterSandboxHooks
from sandbox.zstack_sim.seed import OuterSeed
from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from services.db import utcnow
from services.labs.models import Lab, LabStep
from tests.fakes.keys import SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
PROFILES = load_profiles(ROOT / "config" / "profiles")
Sessions = async_sessionmaker[AsyncSession]

_RUN = os.getpid()
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_SLOTS = 46 * 4  # /26 networks in 198.18.4.0-198.18.49.255


def _identity(n: int) -> tuple[str, str]:
    """Candidate ``n``: a name prefix (``r`` + three letters) and a public /26 gateway."""
    prefix = "r" + "".join(_LETTERS[(n // 26**i) % 26] for i in (2, 1, 0))
    slot = n % _SLOTS
    return prefix, f"198.18.{4 + slot // 4}.{64 * (slot % 4) + 1}/26"


async def _free_identity() -> tuple[str, str]:
    """The first candidate from this pid on whose prefix no namespace uses and whose network no host address is
    in: two test processes at once (or a crashed run's leftovers) must never share a bridge subnet or have
    one's ``down`` remove the other's VMs."""
    namespaces = {name.split("-", 1)[0] for name in await system.list_netns()}
    addresses = (await system.run("ip", "-4", "-o", "addr", "show")).stdout.split()
    networks = {ipaddress.ip_interface(a).network for a in addresses if a.count(".") == 3 and "/" in a}
    for n in range(_RUN, _RUN + _SLOTS):
        prefix, gateway = _identity(n)
        network = ipaddress.ip_interface(gateway).network
        if prefix not in namespaces and not any(network.overlaps(other) for other in networks):
            return prefix, gateway
    pytest.fail("no free sandbox prefix and public network for the reliability box")


# The build's steps in an order where each one can still be caught running after the previous kill (the DAG
# re-runs whatever was interrupted, so a step that ran beside the killed one runs again after the restart).
BUILD_STEPS = ("prepare", "create_vms", "attach_volume", "wait_ssh", "iscsi_target", "serve_image", "install_zstack",
               "nested_compute", "nested_storage", "nested_network_image", "nested_vm", "first_health")


def require_sandbox() -> None:
    """Skip (or fail, in CI) when this machine cannot run the lab-in-a-box."""
    problems = system.missing_requirements()
    if problems:
        reason = "lab-in-a-box unavailable: " + "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run the sandbox tests)")
        pytest.skip(reason)


@dataclass
class Platform:
    """The box and the outer simulator serving it."""

    config: SandboxConfig
    sim: RunningSimulator


@contextlib.asynccontextmanager
async def platform(name: str, *, latency_scale: float, nested_latency: float,
                   durations: dict[str, float] | None = None) -> AsyncIterator[Platform]:
    """Bring up a private box and its outer simulator; always take the box down (the real ``down``) after."""
    require_sandbox()
    prefix, gateway = await _free_identity()
    config = SandboxConfig(
        base_dir=Path(f"/var/lib/labbot-rel-{name}-{_RUN}"),
        prefix=prefix,
        public_gateway=gateway,
        # The nested simulator on VM2 gets latencies too, so the nested steps last long enough to be caught.
        nested_sim=(*nested_sim_command(), "--latency-scale", str(nested_latency)),
    )
    await lifecycle.up(config)
    try:
        async with serve_simulator("outer", hooks=OuterSandboxHooks(config), latency_scale=latency_scale,
                                   durations=durations, outer_seed=OuterSeed(ranges=config.public_ranges())) as sim:
            yield Platform(config, sim)
    finally:
        await lifecycle.down(config)


def worker_env(database_url: str, platform_url: str, state_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of the killable labbot: this test's database and platform, short leases, no scheduler
    (the sweeps would race the test's own destroy requests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LABBOT_"))}
    env.update({
        "LABBOT_DATABASE_URL": database_url, "LABBOT_PLATFORM_URL": platform_url,
        "LABBOT_DEFAULT_PROFILE": "sandbox", "LABBOT_STATE_DIR": str(state_dir), "LABBOT_LEASE_SECONDS": "10",
        "LABBOT_SCHEDULER_ENABLED": "false", "LABBOT_DESTROY_RETRY_BASE_SECONDS": "1", "PYTHONUNBUFFERED": "1",
        "LABBOT_MAX_LABS_PER_USER": "20", "LABBOT_MAX_LABS_TOTAL": "40", "LABBOT_SECRET_KEY": SECRET_KEY,
    })
    env.update(extra)
    return env


def service_settings(database_url: str, platform_url: str) -> Settings:
    """Settings for the test's own front end (commands only: it never builds, the worker does)."""
    return load_settings(database_url=database_url, platform_url=platform_url, default_profile="sandbox",
                         max_labs_per_user=20, max_labs_total=40, secret_key=SECRET_KEY)


class Labbot:
    """``labbot worker`` as a child process: started, killed with SIGKILL, started again, on one database."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, poll_seconds: float = 0.2) -> None:
        self.env = env
        self.log_dir = log_dir
        self.poll_seconds = poll_seconds
        self.process: asyncio.subprocess.Process | None = None
        self.generation = 0
        self.kills = 0
        self._logs: list[IO[bytes]] = []

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        """Start a fresh process (a new lease owner, as a restarted labbot is)."""
        assert self.process is None or self.process.returncode is not None, "labbot is already running"
        self.generation += 1
        log = (self.log_dir / f"labbot-{self.generation}.log").open("wb")
        self._logs.append(log)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "worker", "--poll-seconds", str(self.poll_seconds),
            cwd=ROOT, env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT)

    async def kill(self) -> int:
        """SIGKILL, and wait until the process is gone; returns its pid."""
        assert self.process is not None
        pid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.kills += 1
        return pid

    async def stop(self) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL if that takes more than 20 s; returns the exit code."""
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of every generation's log (for failure messages)."""
        parts = []
        for number in range(1, self.generation + 1):
            path = self.log_dir / f"labbot-{number}.log"
            if path.exists():
                parts.append(f"--- labbot #{number} ---\n" + path.read_text(errors="replace")[-chars:])
        return "\n".join(parts)

    async def close(self) -> None:
        await self.stop()
        for log in self._logs:
            log.close()


async def expire_leases_of(sessions: Sessions, pid: int) -> int:
    """Let the leases of a dead process run out now instead of in ``lease_seconds``.

    The process was SIGKILLed and reaped, so nothing renews them; this is only the passing of time. Takeover
    after a real lease expiry is what tests/scheduler/test_replicas.py and the soak's slow rounds cover.
    """
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(Lab).where(Lab.lease_owner.like(f"%:{pid}:%"))
            .values(lease_expires_at=utcnow()).execution_options(synchronize_session=False))
        return int(result.rowcount)  # type: ignore[attr-defined]


async def step_states(sessions: Sessions, lab_id: int) -> dict[str, str]:
    async with sessions() as session:
        rows = await session.execute(select(LabStep.name, LabStep.state).where(LabStep.lab_id == lab_id))
        return dict(rows.tuples().all())


async def step_attempts(sessions: Sessions, lab_id: int) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(select(LabStep.name, LabStep.attempt).where(LabStep.lab_id == lab_id))
        return dict(rows.tuples().all())


async def lab_row(sessions: Sessions, lab_id: int) -> Lab:
    async with sessions() as session:
        lab = await session.get(Lab, lab_id)
        assert lab is not None
        return lab


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0,
                interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true, and return that; fail naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(interval)


async def wait_running(sessions: Sessions, lab_id: int, step: str, timeout: float = 60.0) -> bool:
    """Poll the steps table (every 10 ms) until ``step`` is running (True) or finished without being seen (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = (await step_states(sessions, lab_id)).get(step)
        if state == "running":
            return True
        if state in ("done", "failed"):
            return False
        await asyncio.sleep(0.01)
    return False


@dataclass
class KillRecord:
    """One SIGKILL: what was targeted and what the database says was running when the process died."""

    target: str
    interrupted: tuple[str, ...]
    at: float = field(default_factory=time.monotonic)


async def kill_and_restart(labbot: Labbot, sessions: Sessions, lab_ids: list[int], target: str,
                           *, wait_lease: bool = False) -> KillRecord:
    """SIGKILL labbot, note the steps it left running (frozen in the database now), restart it."""
    pid = await labbot.kill()
    interrupted: list[str] = []
    for lab_id in lab_ids:
        interrupted += [name for name, state in (await step_states(sessions, lab_id)).items() if state == "running"]
    if not wait_lease:
        await expire_leases_of(sessions, pid)
    await labbot.start()
    return KillRecord(target, tuple(sorted(interrupted)))


# --- the platform's truth --------------------------------------------------------------------------------


def role_uuid(lab_uuid: str, role: str) -> str:
    """The uuid labbot gives a lab's outer resource (services.labs.build.context.LabContext.resource_uuid)."""
    return uuidlib.uuid5(uuidlib.UUID(lab_uuid), role).hex


def platform_problems(sim: RunningSimulator, live: dict[str, str]) -> list[str]:
    """Duplicated or leaked VMs and data volumes on the outer simulator.

    ``live`` maps lab name → lab uuid of every lab that should hold resources (ready labs): each must have
    exactly VM1, VM2 and one data volume, with the uuids labbot chose; nothing else may exist.
    """
    problems = []
    vms = sim.state.list("vm")
    volumes = [v for v in sim.state.list("volume") if v.get("type") == "Data"]
    expected_vms = {role_uuid(u, r): f"{n}/{r}" for n, u in live.items() for r in ("vm1", "vm2")}
    expected_volumes = {role_uuid(u, "data-volume"): f"{n}/data" for n, u in live.items()}
    names: dict[str, int] = {}
    for vm in vms:
        names[vm["name"]] = names.get(vm["name"], 0) + 1
        if vm["uuid"] not in expected_vms:
            problems.append(f"leaked VM {vm['name']} ({vm['uuid']}, {vm.get('state')})")
    problems += [f"duplicated VM name {n} ({c} VMs)" for n, c in names.items() if c > 1]
    present = {vm["uuid"] for vm in vms}
    problems += [f"missing VM {what}" for uuid, what in expected_vms.items() if uuid not in present]
    for volume in volumes:
        if volume["uuid"] not in expected_volumes:
            problems.append(f"leaked data volume {volume['name']} ({volume['uuid']})")
    present = {v["uuid"] for v in volumes}
    problems += [f"missing data volume {what}" for uuid, what in expected_volumes.items() if uuid not in present]
    roots = [v for v in sim.state.list("volume") if v.get("type") == "Root" and v.get("vmInstanceUuid") not in
             {vm["uuid"] for vm in vms}]
    problems += [f"leaked root volume {v['uuid']}" for v in roots]
    return problems


async def machine_problems(config: SandboxConfig, live_vms: set[str]) -> list[str]:
    """VM namespaces, records or sshd/tgtd processes on this machine that no live VM accounts for."""
    status = await lifecycle.status(config)
    problems = [f"VM {vm.name} ({vm.uuid}) still on the machine" for vm in status.vms if vm.uuid not in live_vms]
    problems += [f"stray namespace {n}" for n in status.stray_namespaces]
    wanted = {config.vm_netns(u) for u in live_vms}
    vm_namespaces = [n for n in status.namespaces if "-net-" not in n and n not in wanted]
    problems += [f"namespace {n} of a gone VM" for n in vm_namespaces]
    marker = f"{config.vms_dir}/".encode()
    live_dirs = {f"{config.vm_dir(u)}/".encode() for u in live_vms}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline and not any(d in cmdline for d in live_dirs):
                command = cmdline.replace(b"\0", b" ")[:120].decode(errors="replace")
                problems.append(f"process {entry} of a gone VM: {command}")
    return problems


# --- network faults --------------------------------------------------------------------------------------


def sshd_sessions(config: SandboxConfig, vm_uuid: str) -> list[int]:
    """The per-connection sshd processes of a VM: children of its listening sshd named sshd/sshd-session."""
    listener = int((config.vm_dir(vm_uuid) / "pid").read_text())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == listener and comm in {"sshd", "sshd-session"}:
                found.append(int(entry))
    return found


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    return children


def cut_ssh(config: SandboxConfig, vm_uuid: str, *, reset: bool) -> int:
    """Cut every SSH connection to a VM from the server side; returns how many sessions were cut.

    ``reset``: kill each session's whole process tree, so the socket closes at once (the client sees the drop
    on its next read or write). Otherwise only the session's monitor dies and its unprivileged child keeps the
    socket open without answering: a silent drop, noticed only by timeouts. Killing VM1's sessions also cuts
    everything labbot tunnels through VM1 to VM2."""
    sessions = sshd_sessions(config, vm_uuid)
    victims = list(sessions)
    if reset:
        children = _children_map()
        stack = list(sessions)
        while stack:
            for child in children.get(stack.pop(), []):
                victims.append(child)
                stack.append(child)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(sessions)


NESTED_COUNT_SCRIPT = """
import asyncio, json, sys
from pydantic import SecretStr
from services.zstack.client import ZStackClient
ACTIONS = ("QueryZone", "QueryCluster", "QueryHost", "QueryIscsiServer", "QueryPrimaryStorage", "QueryImage",
           "QueryL3Network", "QueryInstanceOffering", "QueryVmInstance", "QueryBackupStorage")
async def main():
    async with ZStackClient("http://127.0.0.1:8080/zstack/v1", "admin", SecretStr(sys.stdin.read())) as zs:
        print(json.dumps({a: [i.get("name") for i in await zs.query(a)] for a in ACTIONS}))
asyncio.run(main())
"""


async def nested_inventory(config: SandboxConfig, vm2_uuid: str, password: str) -> dict[str, list[str]]:
    """Names of the nested ZStack's resources by Query API, read inside VM2's network namespace as admin with the
    lab's own nested password (given on standard input, never on a command line)."""
    import json

    result = await system.run("ip", "netns", "exec", config.vm_netns(vm2_uuid), sys.executable, "-c",
                              NESTED_COUNT_SCRIPT, check=True, stdin=password.encode())
    return dict(json.loads(result.stdout))


def nested_duplicates(inventory: dict[str, list[str]]) -> list[str]:
    """Nested resources that exist more than once under one name, or are missing (the build makes one each)."""
    problems = []
    for action, names in inventory.items():
        if not names:
            problems.append(f"{action}: nothing")
        problems += [f"{action}: {n} x{names.count(n)}" for n in sorted(set(names)) if names.count(n) > 1]
    return problems


async def step_report(sessions: Sessions, lab_id: int) -> dict[str, tuple[str, int, float | None, str | None]]:
    """Per step: state, attempts, duration of the last attempt and its progress line (for diagnostics)."""
    async with sessions() as session:
        rows = (await session.scalars(select(LabStep).where(LabStep.lab_id == lab_id))).all()
        return {r.name: (r.state, r.attempt, r.duration_seconds, r.progress) for r in rows}
