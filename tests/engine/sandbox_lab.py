"""Test support: labbot's whole domain (Runtime) against a private lab-in-a-box and an outer simulator.

``SandboxBox`` is one lab-in-a-box per test module (its own base dir, prefix ``e`` + two letters and public
/24 in 198.18.4-49.0, all derived from the test process, so it never meets a demo, the tests/sandbox boxes or
another run). ``lab_world`` serves the outer simulator with the box's hooks, migrates the test's database
(SQLite or PostgreSQL) and starts a ``Runtime`` on them, wired as ``labbot demo`` wires it. Everything is torn
down even when the test fails: the runtime is stopped, every VM and volume left in the simulator is removed
from the machine, and the module's box goes with the real ``lifecycle.down``.

Reading the world for real (not from labbot's database) is done here too: the nested ZStack is asked through
an SSH tunnel via VM1, exactly as labbot reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select

from config.settings import Settings, load_settings
from sandbox import lifecycle, system, vm
from sandbox.config import SandboxConfig
from sandbox.hooks import OuterSandboxHooks
from sandbox.zstack_sim.seed import OuterSeed
from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from services import db
from services.crypto import SecretBox
from services.labs import repository as repo
from services.labs.build.pipeline import StepHook
from services.labs.models import HostKey, Lab, LabEvent, LabStep
from services.labs.notifier import Notifier, RecordingNotifier
from services.labs.runtime import Runtime
from services.labs.service import Actor
from services.ssh import HostAddress, LabSSH, MemoryHostKeyStore, keypair_from_private
from services.zstack.client import ZStackClient
from tests.sandbox.labbox import require_sandbox

_RUN = os.getpid()
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
PREFIX = "e" + _LETTERS[(_RUN // 26) % 26] + _LETTERS[_RUN % 26]
PUBLIC_GATEWAY = f"198.18.{4 + _RUN % 46}.1/24"  # clear of the demo (198.18.0.0/22) and tests/sandbox (50-249)
OWNER = Actor("U_OWNER")
BUILD_TIMEOUT = 90.0

# Nested ZStack queries and the resource each counts; a lab has exactly one of each.
NESTED_KINDS = {
    "zone": "QueryZone", "cluster": "QueryCluster", "host": "QueryHost", "iscsi_server": "QueryIscsiServer",
    "primary_storage": "QueryPrimaryStorage", "backup_storage": "QueryBackupStorage", "l2": "QueryL2Network",
    "l3": "QueryL3Network", "image": "QueryImage", "offering": "QueryInstanceOffering", "vm": "QueryVmInstance",
}


class SandboxBox:
    """A private lab-in-a-box for one test module."""

    def __init__(self, name: str) -> None:
        self.config = SandboxConfig(
            base_dir=Path(f"/var/lib/labbot-sandbox-test-{name}-{_RUN}"),
            prefix=PREFIX,
            public_gateway=PUBLIC_GATEWAY,
        )

    def up(self) -> None:
        asyncio.run(lifecycle.up(self.config))

    def down(self) -> lifecycle.DownReport:
        return asyncio.run(lifecycle.down(self.config))


def box_fixture(name: str) -> Any:
    """A module-scoped fixture factory: ``box = box_fixture("e2e")`` in a test module."""
    import pytest

    @pytest.fixture(scope="module")
    def box() -> Any:
        require_sandbox()
        sandbox = SandboxBox(name)
        sandbox.up()
        try:
            yield sandbox
        finally:
            sandbox.down()
            assert not Path(sandbox.config.base_dir).exists()

    return box


@dataclass
class World:
    """One running labbot domain against the box: simulator, settings, runtime and what it announced."""

    box: SandboxBox
    sim: RunningSimulator
    settings: Settings
    runtime: Runtime
    notices: RecordingNotifier
    runtimes: list[Runtime] = field(default_factory=list)

    @property
    def service(self) -> Any:
        return self.runtime.service

    def new_runtime(self, *, after_step: StepHook | None = None, owner: str | None = None) -> Runtime:
        """Another Runtime on the same database and platform (a restarted or second process)."""
        runtime = Runtime(self.settings, notifiers=[self.notices], after_step=after_step,
                          engine_poll_interval=0.2, owner=owner)
        self.runtimes.append(runtime)
        return runtime

    async def lab_row(self, name: str) -> Lab:
        async with self.runtime.sessions() as session:
            return await repo.get_latest_by_name(session=session, name=name)

    async def steps(self, lab_id: int) -> dict[str, LabStep]:
        async with self.runtime.sessions() as session:
            return {s.name: s for s in await repo.list_steps(session=session, lab_id=lab_id)}

    async def events(self, lab_id: int) -> list[LabEvent]:
        async with self.runtime.sessions() as session:
            return list((await session.scalars(
                select(LabEvent).where(LabEvent.lab_id == lab_id).order_by(LabEvent.id))).all())

    async def host_keys(self, lab_uuid: str) -> dict[str, str]:
        async with self.runtime.sessions() as session:
            rows = (await session.scalars(select(HostKey).where(HostKey.lab_uuid == lab_uuid))).all()
            return {r.host: r.key for r in rows}

    async def wait_state(self, name: str, states: set[str], timeout: float = BUILD_TIMEOUT) -> Lab:
        """Poll the database until the lab is in one of ``states``; on timeout, fail with where the lab stands
        and what its VMs' sshd logged."""
        lab: Lab | None = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    lab = await self.lab_row(name)
                    if lab.state in states:
                        return lab
                    await asyncio.sleep(0.1)
        except TimeoutError:
            if lab is None:
                raise AssertionError(f"lab {name} could not be read within {timeout}s") from None
            steps = {n: (s.state, s.attempt, s.error) for n, s in (await self.steps(lab.id)).items()}
            raise AssertionError(f"lab {name} still {lab.state} after {timeout}s; steps {steps}\n"
                                 f"{self.consoles(lab)}") from None

    def consoles(self, lab: Lab, chars: int = 3000) -> str:
        """The end of each of the lab's VM consoles (its sshd's log: sessions opened, closed, refused), for a
        failure's message."""
        parts = []
        for role, uuid in (("vm1", lab.vm1_uuid), ("vm2", lab.vm2_uuid)):
            path = self.box.config.vm_dir(uuid) / "console.log" if uuid else None
            if path is not None and path.exists():
                parts.append(f"--- {role} console ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def outer_vms(self, lab_uuid: str) -> list[dict[str, Any]]:
        """The outer simulator's VMs tagged with the lab (whatever their state)."""
        tag = f"labbot::lab::{lab_uuid}"
        return [v for v in self.sim.state.list("vm") if tag in self.sim.state.tags_of(v["uuid"], "User")]

    def outer_volumes(self, lab_uuid: str) -> list[dict[str, Any]]:
        """The outer simulator's data volumes tagged with the lab."""
        tag = f"labbot::lab::{lab_uuid}"
        return [v for v in self.sim.state.list("volume") if tag in self.sim.state.tags_of(v["uuid"], "User")]

    @contextlib.asynccontextmanager
    async def lab_ssh(self, lab: Lab) -> AsyncIterator[LabSSH]:
        """A fresh SSH session to the lab with its own key (not labbot's pinned keys: a second observer)."""
        key = keypair_from_private(SecretBox(self.settings.secret_key).decrypt(lab.ssh_private_key_enc or ""))
        ssh = LabSSH(lab.uuid, vm1=HostAddress(lab.vm1_public_ip or ""), vm2=HostAddress(lab.vm2_ip or ""),
                     username="root", key=key, host_keys=MemoryHostKeyStore())
        async with ssh:
            yield ssh

    @contextlib.asynccontextmanager
    async def nested(self, lab: Lab) -> AsyncIterator[ZStackClient]:
        """The lab's nested ZStack as admin with the lab's password, through a tunnel via VM1 (VM2 has no route
        from here)."""
        async with self.lab_ssh(lab) as ssh:
            port = await ssh.forward_local("vm2", 8080)
            password = SecretBox(self.settings.secret_key).decrypt(lab.nested_password_enc or "")
            async with ZStackClient(f"http://127.0.0.1:{port}/zstack/v1", "admin", password) as client:
                yield client

    async def nested_counts(self, lab: Lab) -> dict[str, int]:
        """How many of each nested resource the lab's nested ZStack holds."""
        async with self.nested(lab) as client:
            return {kind: len(await client.query(api)) for kind, api in NESTED_KINDS.items()}

    async def machine_leftovers(self, lab: Lab) -> list[str]:
        """Namespaces, processes and files of the lab's VMs and volume still on this machine."""
        config = self.box.config
        left: list[str] = []
        namespaces = await system.list_netns()
        for uuid in (lab.vm1_uuid, lab.vm2_uuid):
            if not uuid:
                continue
            if config.vm_netns(uuid) in namespaces:
                left.append(f"namespace {config.vm_netns(uuid)}")
            if config.vm_dir(uuid).exists():
                left.append(f"directory {config.vm_dir(uuid)}")
            record = vm.read_record(config, uuid)
            if record and record.netns_inode and system.pids_in_netns({record.netns_inode}):
                left.append(f"processes of {uuid}")
        if lab.volume_uuid and config.volume_file(lab.volume_uuid).exists():
            left.append(f"volume file {config.volume_file(lab.volume_uuid)}")
        return left


async def _remove_leftovers(box: SandboxBox, sim: RunningSimulator) -> None:
    """After a failed test: take every VM and volume the simulator still has off the machine."""
    hooks = OuterSandboxHooks(box.config)
    for record in sim.state.list("vm"):
        with contextlib.suppress(Exception):
            await hooks.vm_expunged(record["uuid"])
    for record in sim.state.list("volume"):
        if record.get("type") == "Data":
            with contextlib.suppress(Exception):
                await hooks.volume_expunged(record["uuid"])


@contextlib.asynccontextmanager
async def lab_world(
    box: SandboxBox,
    database_url: str,
    workdir: Path,
    *,
    seed: OuterSeed | None = None,
    after_step: StepHook | None = None,
    notifiers: Sequence[Notifier] = (),
    start: bool = True,
    **overrides: Any,
) -> AsyncIterator[World]:
    """Outer simulator on the box, a migrated database, and a started Runtime; all removed afterwards."""
    outer_seed = seed or OuterSeed(ranges=box.config.public_ranges())
    async with serve_simulator("outer", hooks=OuterSandboxHooks(box.config), latency_scale=0.0,
                               outer_seed=outer_seed) as sim:
        settings = load_settings(
            database_url=database_url,
            state_dir=workdir,
            platform_url=sim.url,
            platform_account="admin",
            platform_password=SecretStr("password"),
            default_profile="sandbox",
            **overrides,
        )
        await db.upgrade(settings.database_url)
        notices = RecordingNotifier()
        runtime = Runtime(settings, notifiers=[notices, *notifiers], after_step=after_step,
                          engine_poll_interval=0.2)
        world = World(box=box, sim=sim, settings=settings, runtime=runtime, notices=notices, runtimes=[runtime])
        try:
            if start:
                await runtime.start()
            yield world
        finally:
            for each in world.runtimes:
                with contextlib.suppress(Exception):
                    await each.stop()
            await _remove_leftovers(box, sim)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0, interval: float = 0.1) -> None:
    """Wait for an async condition (TimeoutError if it never holds)."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(interval)
