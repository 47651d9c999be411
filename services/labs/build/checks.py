"""Exercise labs: labbot builds the start of the lab, the student does the rest by hand, and checks say how far.

The student's tasks are the build's own steps from a start point on, in the course's order (ZCCT: export the
disk over iSCSI, install ZStack, add the host, the iSCSI server, the LUN and SharedBlock storage, network and
image, boot a VM). ``check_tasks`` looks at the real machines, read only, and says for each task whether it
is done, with a specific hint when it is not. It never changes the lab: it lists targets, reads files and
queries the nested API. What it finds (the target's wwid, the nested uuids) is returned as facts, so that
``/lab solve`` can carry on from a student's own work with the build's idempotent steps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.profiles import LabProfile
from services import shell
from services.i18n import _
from services.iscsi.backends import backend_for
from services.iscsi.base import Export, device_size
from services.iscsi.disk import find_data_disk
from services.iscsi.initiator import read_initiator_name
from services.labs.build.dag import describe_error
from services.labs.tasks import TaskResult
from services.ssh.session import LabSSH
from services.zstack.client import ZStackClient
from services.zstack.query import eq

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 30.0
MAX_EXPORTS = 64  # a VM1 listing more targets than this is not a lab exercise; the rest are not read


# Which tasks a task builds on: a check of a later task waits for those (its hint names them instead).
NEEDS: dict[str, tuple[str, ...]] = {
    "nested_compute": ("install_zstack",),
    "nested_storage": ("iscsi_target", "nested_compute"),
    "nested_network_image": ("nested_compute",),
    "nested_vm": ("nested_storage", "nested_network_image"),
}


class CheckHint(Exception):
    """A task is not done yet; the message tells the student what is missing."""


@dataclass
class LabFacts:
    """What the checks know of the lab: its record, plus what earlier checks of this run found."""

    volume_uuid: str
    vm1_vpc_ip: str
    vm2_ip: str
    iscsi_iqn: str | None = None
    iscsi_wwid: str | None = None
    nested_ids: dict[str, str] = field(default_factory=dict)


class ExerciseChecker:
    """Read-only checks of an exercise lab's tasks against VM1, VM2 and the nested ZStack."""

    def __init__(self, *, profile: LabProfile, facts: LabFacts, ssh: Callable[[], Awaitable[LabSSH]],
                 nested: Callable[[], Awaitable[ZStackClient]]) -> None:
        self.profile = profile
        self.facts = facts
        self._ssh = ssh
        self._nested = nested

    async def check(self, steps: Sequence[str]) -> list[TaskResult]:
        """Check ``steps`` in order; a later step sees what an earlier one found."""
        checks: dict[str, Callable[[], Awaitable[tuple[str, dict[str, Any]]]]] = {
            "iscsi_target": self.iscsi_target,
            "install_zstack": self.install_zstack,
            "nested_compute": self.nested_compute,
            "nested_storage": self.nested_storage,
            "nested_network_image": self.nested_network_image,
            "nested_vm": self.nested_vm,
        }
        results: list[TaskResult] = []
        done: set[str] = set()
        for step in steps:
            started = time.monotonic()
            waiting = [need for need in NEEDS.get(step, ()) if need in steps and need not in done]
            if waiting:
                results.append(
                    TaskResult(step, False, _("comes after {join}, not done yet").format(join=", ".join(waiting)))
                )
                continue
            try:
                async with asyncio.timeout(CHECK_TIMEOUT):
                    detail, facts = await checks[step]()
            except CheckHint as hint:
                results.append(TaskResult(step, False, str(hint)))
            except Exception as err:  # an unreachable VM or API is "not yet", said plainly
                log.info("exercise check %s: %s", step, describe_error(err))
                results.append(TaskResult(step, False, describe_error(err)))
            else:
                self._learn(facts)
                done.add(step)
                results.append(TaskResult(step, True, detail, facts))
            log.debug("exercise check %s took %.2f s", step, time.monotonic() - started)
        return results

    def _learn(self, facts: dict[str, Any]) -> None:
        for key in ("iscsi_iqn", "iscsi_wwid"):
            if key in facts:
                setattr(self.facts, key, facts[key])
        self.facts.nested_ids.update(facts.get("nested_ids", {}))

    # --- VM1 and VM2 -------------------------------------------------------------------------------------

    async def iscsi_target(self) -> tuple[str, dict[str, Any]]:
        ssh = await self._ssh()
        on_vm1 = ssh.runner("vm1", timeout=20)
        port, vpc_ip = self.profile.iscsi.port, self.facts.vm1_vpc_ip
        device = await find_data_disk(on_vm1, self.facts.volume_uuid, self.profile.data_volume.data_disk)
        exports = (await backend_for(self.profile.iscsi.backend, on_vm1).exports())[:MAX_EXPORTS]
        if not exports:
            raise CheckHint(
                _(
                    "VM1 exports no iSCSI target on {port} yet (targetcli: a block backstore on "
                    "the 50 GB disk, an iSCSI target, a LUN)"
                ).format(port=port)
            )
        ours = await self._backed_by(on_vm1, device, exports)
        if not ours:
            shown = ", ".join(sorted({e.iqn for e in exports}))[:200]
            raise CheckHint(
                _("the target has no LUN backed by the 50 GB disk ({device}); targets seen: {shown}").format(
                    device=device, shown=shown
                )
            )
        listening = [e for e in ours if e.listens_on(vpc_ip, port)]
        if not listening:
            raise CheckHint(
                _("target {iqn} has no portal on {vpc_ip}:{port} (VM1's VPC address)").format(
                    iqn=ours[0].iqn, vpc_ip=vpc_ip, port=port
                )
            )
        initiator = await read_initiator_name(ssh.runner("vm2", timeout=20))
        admitted = [e for e in listening if e.admits(initiator)]
        if not admitted:
            raise CheckHint(
                _("VM2's initiator {initiator} is not allowed by the target's ACL ({iqn})").format(
                    initiator=initiator, iqn=listening[0].iqn
                )
            )
        export = admitted[0]
        probe = f"timeout 5 bash -c {shell.quote(f'exec 3<>/dev/tcp/{shell.ipv4(vpc_ip)}/{shell.port(port)}')}"
        reach = await ssh.run("vm2", probe, timeout=15, check=False)
        if not reach.ok:
            raise CheckHint(
                _("VM2 cannot reach VM1's portal {vpc_ip}:{port} (is the port open in VM1's firewall?)").format(
                    vpc_ip=vpc_ip, port=port
                )
            )
        size = await device_size(on_vm1, device)
        facts = {"iscsi_iqn": export.iqn, "iscsi_wwid": export.wwid, "iscsi_size_bytes": size}
        return _("{iqn} LUN {lun} on {device}, wwid {wwid}, admits {initiator}").format(
            iqn=export.iqn, lun=export.lun, device=device, wwid=export.wwid, initiator=initiator
        ), facts

    @staticmethod
    async def _backed_by(on_vm1: Callable[..., Any], device: str, exports: list[Export]) -> list[Export]:
        """The exports whose backing store is ``device`` (paths compared after resolving links on VM1)."""
        paths = [device, *(e.backing for e in exports)]
        script = 'for p in "$@"; do readlink -f -- "$p" || echo "?"; done'
        result = await on_vm1(f"sh -c {shell.quote(script)} labbot {' '.join(shell.quote(p) for p in paths)}")
        resolved = result.stdout.splitlines()
        if len(resolved) != len(paths):
            return [e for e in exports if e.backing == device]
        wanted = resolved[0]
        return [e for e, real in zip(exports, resolved[1:], strict=True) if real == wanted or e.backing == device]

    async def install_zstack(self) -> tuple[str, dict[str, Any]]:
        api = f"VM2:{self.profile.install.api_port}"
        try:
            client = await self._nested()
            ready = await client.is_ready()
        except Exception as err:
            raise CheckHint(
                _("ZStack's API is not answering on {api} ({describe_error})").format(
                    api=api, describe_error=describe_error(err)
                )
            ) from None
        if not ready:
            raise CheckHint(
                _(
                    "ZStack's API is not answering on {api} (is ZStack installed and its "
                    "management node started? `zstack-ctl status` on VM2)"
                ).format(api=api)
            )
        await client.login()  # IsReadyToGo needs no session: a real login proves the install is usable
        return _("ZStack {value} answering on {api}, login ok").format(value=await client.get_version(), api=api), {}

    # --- the nested ZStack -------------------------------------------------------------------------------

    async def nested_compute(self) -> tuple[str, dict[str, Any]]:
        n = await self._nested()
        vm2 = self.facts.vm2_ip
        hosts = await n.query("QueryHost", [eq("managementIp", vm2)])
        if not hosts:
            if not await n.query("QueryZone"):
                raise CheckHint(_("the nested ZStack has no zone yet"))
            if not await n.query("QueryCluster", [eq("hypervisorType", "KVM")]):
                raise CheckHint(_("the nested ZStack has no KVM cluster yet"))
            raise CheckHint(_("VM2 ({vm2}) is not added as a KVM host yet").format(vm2=vm2))
        host = hosts[0]
        if host.get("status") != "Connected":
            raise CheckHint(
                _("the KVM host VM2 ({vm2}) is {get}, not Connected").format(vm2=vm2, get=host.get("status"))
            )
        ids = {"zone": host["zoneUuid"], "cluster": host["clusterUuid"], "host": host["uuid"]}
        return _("KVM host {vm2} Connected in cluster {value}").format(vm2=vm2, value=host["clusterUuid"][:8]), {
            "nested_ids": ids
        }

    async def nested_storage(self) -> tuple[str, dict[str, Any]]:
        n = await self._nested()
        vpc_ip, port = self.facts.vm1_vpc_ip, self.profile.iscsi.port
        wwid = self.facts.iscsi_wwid
        if not wwid:
            raise CheckHint(_("the iSCSI target step is not done yet: there is no LUN to build storage on"))
        servers = [s for s in await n.query("QueryIscsiServer", [eq("ip", vpc_ip)]) if int(s.get("port", 0)) == port]
        if not servers:
            raise CheckHint(
                _("no iSCSI server VM1 ({vpc_ip}:{port}) in the nested ZStack yet").format(vpc_ip=vpc_ip, port=port)
            )
        groups = await n.query("QuerySharedBlockGroupPrimaryStorage")
        storage = next((g for g in groups if any(b.get("diskUuid") == wwid for b in g.get("sharedBlocks", []))), None)
        if storage is None:
            raise CheckHint(_("no SharedBlock primary storage uses the LUN {wwid}").format(wwid=wwid))
        if storage.get("status") != "Connected":
            raise CheckHint(
                _("SharedBlock storage {get} is {get2}, not Connected").format(
                    get=storage.get("name"), get2=storage.get("status")
                )
            )
        cluster = self.facts.nested_ids.get("cluster")
        if cluster and cluster not in storage.get("attachedClusterUuids", []):
            raise CheckHint(
                _("SharedBlock storage {get} is not attached to VM2's cluster").format(get=storage.get("name"))
            )
        ids = {"iscsi_server": servers[0]["uuid"], "primary_storage": storage["uuid"]}
        return _("SharedBlock {get} on LUN {wwid}, Connected").format(get=storage.get("name"), wwid=wwid), {
            "nested_ids": ids
        }

    async def nested_network_image(self) -> tuple[str, dict[str, Any]]:
        n = await self._nested()
        stores = [b for b in await n.query("QueryBackupStorage") if b.get("status") == "Connected"]
        if not stores:
            raise CheckHint(_("the nested ZStack has no Connected backup storage yet"))
        networks = [l3 for l3 in await n.query("QueryL3Network") if l3.get("ipRanges")]
        if not networks:
            raise CheckHint(_("the nested ZStack has no L3 network with an IP range yet"))
        images = [
            i
            for i in await n.query("QueryImage", [eq("status", "Ready")])
            if i.get("mediaType") == "RootVolumeTemplate"
        ]
        if not images:
            raise CheckHint(_("the nested ZStack has no Ready image (root volume template) yet"))
        offerings = await n.query("QueryInstanceOffering")
        if not offerings:
            raise CheckHint(_("the nested ZStack has no instance offering yet"))
        l3 = networks[0]
        ids = {
            "backup_storage": stores[0]["uuid"],
            "l2": l3.get("l2NetworkUuid", ""),
            "l3": l3["uuid"],
            "image": images[0]["uuid"],
            "offering": offerings[0]["uuid"],
        }
        return _("network {get}, image {get2}, offering {get3}").format(
            get=l3.get("name"), get2=images[0].get("name"), get3=offerings[0].get("name")
        ), {"nested_ids": ids}

    async def nested_vm(self) -> tuple[str, dict[str, Any]]:
        n = await self._nested()
        running = await n.query("QueryVmInstance", [eq("type", "UserVm"), eq("state", "Running")])
        if not running:
            raise CheckHint(_("no VM is Running in the nested ZStack yet"))
        storage = self.facts.nested_ids.get("primary_storage")
        shared = {g["uuid"] for g in await n.query("QuerySharedBlockGroupPrimaryStorage")}
        for vm in running:
            root = next((v for v in vm.get("allVolumes", []) if v.get("uuid") == vm.get("rootVolumeUuid")), None)
            where = root.get("primaryStorageUuid") if root else None
            if where in shared and (storage is None or where == storage):
                return _("{get} Running, root volume on SharedBlock").format(get=vm.get("name")), {
                    "nested_ids": {"vm": vm["uuid"]}
                }
        raise CheckHint(
            _("the VM's root volume is not on the SharedBlock storage ({get} is Running elsewhere)").format(
                get=running[0].get("name")
            )
        )
