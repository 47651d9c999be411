"""Does the lab platform have room for one more lab? Asked before a lab is registered, so "no" changes nothing.

ZStack places each VM on one host, so free CPU and memory summed over the platform is not enough: VM1 and VM2
must each fit on some Connected, Enabled host, taking the room the other one took if they land on the same
host. The answer is advisory (another lab may take the room a second later); the build's own
``ZStackCapacityError`` stays the final word and fails ``create_vms`` with the platform's reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from config.profiles import LabProfile
from services.errors import ConfigError, QuotaError
from services.i18n import _
from services.zstack.client import ZStackClient
from services.zstack.inventories import HostInventory

log = logging.getLogger(__name__)

GiB = 1024**3


class CapacityError(QuotaError):
    """The lab platform has no room for the lab's VMs."""


@dataclass(frozen=True)
class Need:
    """One VM's size: CPUs and memory in bytes."""

    role: str
    cpu: int
    memory: int

    def __str__(self) -> str:
        return _("{role} {cpu} CPU / {value:g} GiB").format(role=self.role, cpu=self.cpu, value=self.memory / GiB)


async def needs(outer: ZStackClient, profile: LabProfile) -> list[Need]:
    """VM1's and VM2's sizes, from the instance offerings the profile names."""
    found = []
    for role, spec in (("VM1", profile.vm1), ("VM2", profile.vm2)):
        offering = await outer.compute.find_instance_offering_by_name(spec.instance_offering)
        if offering is None:
            raise ConfigError(_("the lab platform has no instance offering called `{instance_offering}` "
                                "(profile {name})").format(instance_offering=spec.instance_offering, name=profile.name))
        found.append(Need(role, int(offering.cpu_num or 0), int(offering.memory_size or 0)))
    return found


def place(hosts: list[HostInventory], wanted: list[Need]) -> list[Need]:
    """The VMs that find no host, placing the biggest first on the host with the most room left."""
    room = {h.uuid: [int(h.available_cpu_capacity or 0), int(h.available_memory_capacity or 0)] for h in hosts
            if h.state == "Enabled" and h.status == "Connected"}
    homeless = []
    for need in sorted(wanted, key=lambda n: (n.memory, n.cpu), reverse=True):
        fits = [u for u, (cpu, memory) in room.items() if cpu >= need.cpu and memory >= need.memory]
        if not fits:
            homeless.append(need)
            continue
        best = max(fits, key=lambda u: (room[u][1], room[u][0], u))
        room[best][0] -= need.cpu
        room[best][1] -= need.memory
    return homeless


async def check_capacity(outer: ZStackClient, profile: LabProfile) -> None:
    """Raise CapacityError naming what does not fit, when the platform cannot host a ``profile`` lab now."""
    wanted = await needs(outer, profile)
    hosts = [HostInventory.model_validate(raw) for raw in await outer.query("QueryHost")]
    homeless = place(hosts, wanted)
    if homeless:
        usable = [h for h in hosts if h.state == "Enabled" and h.status == "Connected"]
        most_cpu = max((int(h.available_cpu_capacity or 0) for h in usable), default=0)
        most_memory = max((int(h.available_memory_capacity or 0) for h in usable), default=0)
        raise CapacityError(
            _(
                "the lab platform has no room for a `{name}` lab now: {join} fits on none of its {len} usable "
                "hosts (the roomiest has {most_cpu} CPU / {value:.0f} GiB free); try later or ask an admin to "
                "free capacity"
            ).format(
                name=profile.name,
                join=", ".join(map(str, homeless)),
                len=len(usable),
                most_cpu=most_cpu,
                value=most_memory / GiB,
            )
        )
