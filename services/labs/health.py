"""Lab health: every layer of a lab checked from outside in, each with its latency.

Outer VMs Running → SSH to VM1 → SSH to VM2 through it → iSCSI portal reachable from VM2 → nested management
node ready and login works → KVM host Connected → SharedBlock storage Connected with capacity → nested VM
Running. A check that cannot run because an earlier layer is down fails with that reason rather than hanging.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.labs.context import LabContext
from services.labs.dag import describe_error
from services.labs.views import LabView
from services.shell import ipv4, port, quote
from services.ssh.session import LabSSH
from services.zstack.client import ZStackClient

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 20.0


@dataclass(frozen=True)
class CheckResult:
    """One check: did it pass, how long it took, and what it saw."""

    name: str
    ok: bool
    latency_ms: int
    detail: str = ""


@dataclass(frozen=True)
class HealthReport:
    """All checks of one lab at one moment."""

    lab: LabView
    checks: tuple[CheckResult, ...]

    @property
    def healthy(self) -> bool:
        """Whether every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def failing(self) -> list[str]:
        """Names of the checks that failed."""
        return [c.name for c in self.checks if not c.ok]


async def _timed(name: str, probe: Callable[[], Awaitable[str]]) -> CheckResult:
    start = time.monotonic()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            detail = await probe()
        ok = True
    except Exception as err:
        ok, detail = False, describe_error(err)
    return CheckResult(name, ok, int((time.monotonic() - start) * 1000), detail[:300])


async def run_checks(
    ctx: LabContext, outer: ZStackClient, ssh: Callable[[], Awaitable[LabSSH]],
    nested: Callable[[], Awaitable[ZStackClient]],
) -> list[CheckResult]:
    """Run every check of the lab, in order (later layers need earlier ones)."""
    lab = await ctx.lab()
    ids = lab.nested_ids or {}

    async def outer_vms() -> str:
        states = []
        for role, uuid in (("vm1", lab.vm1_uuid), ("vm2", lab.vm2_uuid)):
            vm = await outer.get_vm(uuid) if uuid else None
            state = vm.state if vm else "missing"
            if state != "Running":
                raise RuntimeError(f"{role} is {state}")
            states.append(f"{role} Running")
        return ", ".join(states)

    async def ssh_vm(target: str) -> str:
        result = await (await ssh()).run(target, "true", timeout=15)  # type: ignore[arg-type]
        return f"exit {result.exit_status}"

    async def iscsi_portal() -> str:
        address, portal = ipv4(lab.vm1_vpc_ip or ""), port(ctx.profile.iscsi.port)
        probe = f"timeout 5 bash -c {quote(f'exec 3<>/dev/tcp/{address}/{portal}')}"
        await (await ssh()).run("vm2", probe, timeout=15)
        return f"{address}:{portal} reachable from VM2"

    async def nested_api() -> str:
        client = await nested()
        if not await client.is_ready():
            raise RuntimeError("management node not ready")
        return f"ZStack {await client.get_version()}, login ok"

    async def kvm_host() -> str:
        host = await (await nested()).get_host(ids["host"])
        if host is None or host.status != "Connected":
            raise RuntimeError(f"host is {host.status if host else 'missing'}")
        return "Connected"

    async def shared_block() -> str:
        storage = await (await nested()).get_primary_storage(ids["primary_storage"])
        if storage is None or storage.status != "Connected":
            raise RuntimeError(f"storage is {storage.status if storage else 'missing'}")
        if not storage.available_capacity:
            raise RuntimeError("no capacity left")
        free, total = storage.available_capacity / 1024**3, (storage.total_capacity or 0) / 1024**3
        return f"Connected, {free:.1f} GiB free of {total:.1f} GiB"

    async def nested_vm() -> str:
        vm = await (await nested()).get_vm(ids["vm"])
        if vm is None or vm.state != "Running":
            raise RuntimeError(f"nested VM is {vm.state if vm else 'missing'}")
        return "Running"

    probes: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("outer_vms", outer_vms),
        ("ssh_vm1", lambda: ssh_vm("vm1")),
        ("ssh_vm2", lambda: ssh_vm("vm2")),
        ("iscsi_portal", iscsi_portal),
        ("nested_api", nested_api),
        ("kvm_host", kvm_host),
        ("shared_block", shared_block),
        ("nested_vm", nested_vm),
    ]
    return [await _timed(name, probe) for name, probe in probes]
