"""Host and primary-storage allocation for a new VM, with ZStack's failure reasons.

The candidate hosts are narrowed the way ZStack's allocator flows narrow them: Connected and Enabled; in the
asked zone/cluster/host; in a cluster every requested L3 network's L2 is attached to; with primary storage
attached to the cluster that can hold the root volume; and with the CPU and memory the VM needs. The first
step that leaves nothing names the reason, as a HOST_ALLOCATION.1000 cause (``errors.no_host``).
"""

from __future__ import annotations

import logging
from typing import Any

from sandbox.zstack_sim.errors import no_host
from sandbox.zstack_sim.store import SimState

log = logging.getLogger(__name__)


def choose(
    state: SimState, *, cpu: int, memory: int, root_size: int, l3s: list[dict[str, Any]],
    zone_uuid: str | None = None, cluster_uuid: str | None = None, host_uuid: str | None = None,
    storage_uuid: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The host and primary storage for a new VM; raises the allocator's error when none fits."""
    hosts = [h for h in state.records["host"].values()
             if (zone_uuid is None or h["zoneUuid"] == zone_uuid)
             and (cluster_uuid is None or h["clusterUuid"] == cluster_uuid)
             and (host_uuid is None or h["uuid"] == host_uuid)]
    total = len(hosts)
    hosts = [h for h in hosts if h["status"] == "Connected" and h["state"] == "Enabled"]
    if not hosts:
        raise no_host(f"no Connected hosts found in the [{total}] candidate hosts")
    clusters_of_l2 = [set(state.records["l2"][l3["l2NetworkUuid"]]["attachedClusterUuids"]) for l3 in l3s]
    hosts = [h for h in hosts if all(h["clusterUuid"] in attached for attached in clusters_of_l2)]
    if not hosts:
        names = [l3["name"] for l3 in l3s]
        raise no_host(f"no host found in clusters that have attached to L2Networks which have target L3Networks{names}")
    storage_by_host = {h["uuid"]: _storage_for(state, h, root_size, storage_uuid) for h in hosts}
    hosts = [h for h in hosts if storage_by_host[h["uuid"]] is not None]
    if not hosts:
        raise no_host(f"cannot find any primary storage attached to the candidate hosts' clusters that has "
                      f"[{root_size}] bytes available for the root volume")
    hosts = [h for h in hosts if h["availableCpuCapacity"] >= cpu and h["availableMemoryCapacity"] >= memory]
    if not hosts:
        raise no_host(f"no host having cpu[{cpu}], memory[{memory} bytes] found")
    # The least loaded host first (ZStack's default strategy spreads VMs), the uuid breaking ties.
    host = max(hosts, key=lambda h: (h["availableMemoryCapacity"], h["availableCpuCapacity"], h["uuid"]))
    storage = storage_by_host[host["uuid"]]
    assert storage is not None
    return host, storage


def _storage_for(state: SimState, host: dict[str, Any], size: int, wanted: str | None) -> dict[str, Any] | None:
    for storage in state.records["primary_storage"].values():
        if wanted is not None and storage["uuid"] != wanted:
            continue
        if (host["clusterUuid"] in storage["attachedClusterUuids"] and storage["status"] == "Connected"
                and storage["state"] == "Enabled" and storage["availableCapacity"] >= size):
            return storage
    return None


def reserve_host(host: dict[str, Any], cpu: int, memory: int) -> None:
    """Take a VM's CPU and memory from a host."""
    host["availableCpuCapacity"] -= cpu
    host["availableMemoryCapacity"] -= memory


def release_host(state: SimState, host_uuid: str | None, cpu: int, memory: int) -> None:
    """Give a VM's CPU and memory back to its host (if the host still exists)."""
    host = state.get("host", host_uuid)
    if host is not None:
        host["availableCpuCapacity"] = min(host["totalCpuCapacity"], host["availableCpuCapacity"] + cpu)
        host["availableMemoryCapacity"] = min(host["totalMemoryCapacity"], host["availableMemoryCapacity"] + memory)


def take_storage(storage: dict[str, Any], size: int) -> None:
    """Reserve ``size`` bytes of primary storage."""
    storage["availableCapacity"] -= size
    storage["availablePhysicalCapacity"] = storage.get("availablePhysicalCapacity", 0) - size


def give_storage(state: SimState, storage_uuid: str | None, size: int) -> None:
    """Return ``size`` bytes to a primary storage (if it still exists)."""
    storage = state.get("primary_storage", storage_uuid)
    if storage is not None:
        storage["availableCapacity"] = min(storage["totalCapacity"], storage["availableCapacity"] + size)
        storage["availablePhysicalCapacity"] = min(storage.get("totalPhysicalCapacity", 0),
                                                   storage.get("availablePhysicalCapacity", 0) + size)
