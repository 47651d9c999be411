"""Lab health: every layer of a lab checked from outside in, each with its latency.

Outer VMs Running → SSH to VM1 → SSH to VM2 through it → iSCSI portal reachable from VM2 → the lab's LUN
visible to VM2's initiator → nested management node ready and login works → KVM host Connected → SharedBlock
storage Connected with capacity → nested VM Running. A check that cannot run because an earlier layer is down
fails with that reason rather than hanging.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from services.errors import ExternalError
from services.i18n import _, ngettext
from services.labs.build.context import LabContext
from services.labs.build.dag import describe_error
from services.labs.views import LabView
from services.shell import hex_string, ipv4, iqn, port, quote
from services.ssh.session import LabSSH
from services.zstack.client import ZStackClient

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 20.0


class CheckFailed(ExternalError):
    """What a health check saw instead of a healthy layer (shown to people as is)."""


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


# Run on VM2: is the lab's LUN there for VM2's initiator? Logged in (the real lab, where ZStack's SharedBlock
# holds a session), the disk is a block device named after its wwid; otherwise a discovery that logs in as
# VM2's initiator must list a disk LUN on the target (libiscsi's iscsi-ls), so the ACL is checked too.
_LUN_PROBE = """sh -c '
if ls /dev/disk/by-id/ 2>/dev/null | grep -q -- "$1"; then echo "BLOCKDEV $1"; exit 0; fi
if command -v iscsi-ls >/dev/null 2>&1; then
  init=$(sed -n "s/^InitiatorName=//p" /etc/iscsi/initiatorname.iscsi)
  iscsi-ls -s -i "$init" "iscsi://$3" 2>&1; exit 0
fi
iscsiadm -m session 2>&1; exit 0
' labbot {wwid} {iqn} {portal}"""
_TARGET_LINE = re.compile(r"^Target:(\S+)\s")
_DISK_LUN = re.compile(r"^Lun:(\d+)\s+Type:DIRECT_ACCESS")
_SESSION = re.compile(r"^\S+:\s+\[\d+\]\s+\S+\s+(\S+)")  # iscsiadm -m session: "tcp: [1] ip:port,1 <iqn> ..."


def lun_verdict(output: str, target_iqn: str, wwid: str) -> str:
    """What the VM2 probe says about the lab's LUN; raises when VM2 cannot see it."""
    lines = [line.strip() for line in output.splitlines()]
    if f"BLOCKDEV {wwid}" in lines:
        return _("wwid {wwid} is a block device on VM2").format(wwid=wwid)
    current = None
    for line in lines:
        if match := _TARGET_LINE.match(line):
            current = match.group(1)
        elif current == target_iqn and (match := _DISK_LUN.match(line)):
            return _("LUN {group} of {target_iqn} seen by VM2's initiator").format(
                group=match.group(1), target_iqn=target_iqn
            )
        elif (match := _SESSION.match(line)) and match.group(1) == target_iqn:
            return _("VM2 has a session to {target_iqn}").format(target_iqn=target_iqn)
    seen = output.strip()[-200:] or _("no output")
    raise CheckFailed(
        _("VM2 does not see a disk LUN of {target_iqn} (wwid {wwid}): {seen}").format(
            target_iqn=target_iqn, wwid=wwid, seen=seen
        )
    )


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
    ctx: LabContext,
    outer: ZStackClient,
    ssh: Callable[[], Awaitable[LabSSH]],
    nested: Callable[[], Awaitable[ZStackClient]],
    *,
    skip: Collection[str] = (),
) -> list[CheckResult]:
    """Run every check of the lab but ``skip``, in order (later layers need earlier ones)."""
    lab = await ctx.lab()
    ids = lab.nested_ids or {}

    async def outer_vms() -> str:
        states = []
        for role, uuid in (("vm1", lab.vm1_uuid), ("vm2", lab.vm2_uuid)):
            vm = await outer.compute.get_vm(uuid) if uuid else None
            state = vm.state if vm else "missing"
            if state != "Running":
                raise CheckFailed(_("{role} is {state}").format(role=role, state=state))
            states.append(f"{role} Running")
        return ", ".join(states)

    async def ssh_vm(target: str) -> str:
        result = await (await ssh()).run(target, "true", timeout=15)  # type: ignore[arg-type]
        return _("exit {exit_status}").format(exit_status=result.exit_status)

    async def iscsi_portal() -> str:
        address, portal = ipv4(lab.vm1_vpc_ip or ""), port(ctx.profile.iscsi.port)
        probe = f"timeout 5 bash -c {quote(f'exec 3<>/dev/tcp/{address}/{portal}')}"
        await (await ssh()).run("vm2", probe, timeout=15)
        return _("{address}:{portal} reachable from VM2").format(address=address, portal=portal)

    async def iscsi_lun() -> str:
        if not lab.iscsi_iqn or not lab.iscsi_wwid:
            raise CheckFailed(_("the lab has no iSCSI target recorded yet"))
        portal = f"{ipv4(lab.vm1_vpc_ip or '')}:{port(ctx.profile.iscsi.port)}"
        chap = await ctx.chap()
        if chap is not None:  # libiscsi's iscsi://user%secret@host:port; both are alphanumeric (TargetSpec checks)
            portal = f"{chap[0]}%{chap[1].get_secret_value()}@{portal}"
        command = _LUN_PROBE.format(
            wwid=quote(hex_string(lab.iscsi_wwid, max_length=80)), iqn=quote(iqn(lab.iscsi_iqn)), portal=quote(portal)
        )
        result = await (await ssh()).run("vm2", command, timeout=15, check=False)
        return lun_verdict(result.stdout, lab.iscsi_iqn, lab.iscsi_wwid)

    async def nested_api() -> str:
        client = await nested()
        if not await client.is_ready():
            raise CheckFailed(_("management node not ready"))
        version = await client.get_version()
        # IsReadyToGo and GetVersion need no session: a call that does proves the admin login works.
        nodes = await client.list_management_nodes()
        return ngettext("ZStack {version}, login ok ({n} management node)",
                        "ZStack {version}, login ok ({n} management nodes)", len(nodes)).format(
            version=version, n=len(nodes))

    async def kvm_host() -> str:
        host = await (await nested()).infra.get_host(ids["host"])
        if host is None or host.status != "Connected":
            raise CheckFailed(_("host is {value}").format(value=host.status if host else "missing"))
        return "Connected"

    async def shared_block() -> str:
        storage = await (await nested()).storage.get_primary_storage(ids["primary_storage"])
        if storage is None or storage.status != "Connected":
            raise CheckFailed(_("storage is {value}").format(value=storage.status if storage else "missing"))
        if not storage.available_capacity:
            raise CheckFailed(_("no capacity left"))
        free, total = storage.available_capacity / 1024**3, (storage.total_capacity or 0) / 1024**3
        return _("Connected, {free:.1f} GiB free of {total:.1f} GiB").format(free=free, total=total)

    async def nested_vm() -> str:
        vm = await (await nested()).compute.get_vm(ids["vm"])
        if vm is None or vm.state != "Running":
            raise CheckFailed(_("nested VM is {value}").format(value=vm.state if vm else "missing"))
        return "Running"

    probes: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("outer_vms", outer_vms),
        ("ssh_vm1", lambda: ssh_vm("vm1")),
        ("ssh_vm2", lambda: ssh_vm("vm2")),
        ("iscsi_portal", iscsi_portal),
        ("iscsi_lun", iscsi_lun),
        ("nested_api", nested_api),
        ("kvm_host", kvm_host),
        ("shared_block", shared_block),
        ("nested_vm", nested_vm),
    ]
    return [await _timed(name, probe) for name, probe in probes if name not in skip]
