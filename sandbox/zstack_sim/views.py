"""Rendering stored records as the inventories ZStack answers with, joins included.

``FIELDS`` lists each inventory's fields as the SDK declares them; a query on any other field is refused, as
ZStack's query facade refuses it, so a typo in a client condition fails loudly instead of matching nothing.
Null fields are left out of answers, as Gson leaves them out.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from sandbox.zstack_sim.store import SimState

log = logging.getLogger(__name__)

_COMMON = ("uuid", "name", "description", "createDate", "lastOpDate")
FIELDS: dict[str, tuple[str, ...]] = {
    "zone": (*_COMMON, "state", "type", "isDefault"),
    "cluster": (*_COMMON, "zoneUuid", "state", "hypervisorType", "type", "architecture"),
    "host": (*_COMMON, "zoneUuid", "clusterUuid", "managementIp", "hypervisorType", "state", "status",
             "totalCpuCapacity", "availableCpuCapacity", "cpuSockets", "totalMemoryCapacity",
             "availableMemoryCapacity", "cpuNum", "architecture", "username", "sshPort", "osDistribution",
             "osRelease", "osVersion"),
    "primary_storage": (*_COMMON, "zoneUuid", "url", "totalCapacity", "availableCapacity", "totalPhysicalCapacity",
                        "availablePhysicalCapacity", "systemUsedCapacity", "type", "state", "status", "mountPath",
                        "attachedClusterUuids", "sharedBlocks", "sharedBlockGroupType"),
    "shared_block": (*_COMMON, "sharedBlockGroupUuid", "type", "diskUuid", "state", "status", "totalCapacity",
                     "availableCapacity"),
    "backup_storage": (*_COMMON, "url", "totalCapacity", "availableCapacity", "type", "state", "status",
                       "attachedZoneUuids", "hostname", "username", "sshPort"),
    "image": (*_COMMON, "state", "status", "size", "actualSize", "md5Sum", "url", "mediaType", "guestOsType", "type",
              "platform", "architecture", "format", "system", "virtio", "backupStorageRefs"),
    "l2": (*_COMMON, "zoneUuid", "physicalInterface", "type", "vSwitchType", "virtualNetworkId", "isolated",
           "attachedClusterUuids", "vni", "poolUuid"),
    "l3": (*_COMMON, "type", "zoneUuid", "l2NetworkUuid", "state", "dnsDomain", "system", "category", "ipVersion",
           "enableIPAM", "dns", "ipRanges", "networkServices"),
    "ip_range": (*_COMMON, "l3NetworkUuid", "startIp", "endIp", "netmask", "gateway", "networkCidr", "ipVersion",
                 "prefixLen", "ipRangeType"),
    "provider": (*_COMMON, "type", "networkServiceTypes", "attachedL2NetworkUuids"),
    "instance_offering": (*_COMMON, "cpuNum", "cpuSpeed", "memorySize", "reservedMemorySize", "type",
                          "allocatorStrategy", "sortKey", "state"),
    "disk_offering": (*_COMMON, "diskSize", "type", "state", "allocatorStrategy", "sortKey"),
    "vm": (*_COMMON, "zoneUuid", "clusterUuid", "imageUuid", "hostUuid", "lastHostUuid", "instanceOfferingUuid",
           "rootVolumeUuid", "platform", "architecture", "defaultL3NetworkUuid", "type", "hypervisorType",
           "memorySize", "cpuNum", "cpuSpeed", "allocatorStrategy", "state", "guestOsType", "vmNics", "allVolumes"),
    "nic": ("uuid", "vmInstanceUuid", "l3NetworkUuid", "ip", "mac", "netmask", "gateway", "ipVersion", "deviceId",
            "internalName", "type", "state", "usedIps", "createDate", "lastOpDate"),
    "volume": (*_COMMON, "primaryStorageUuid", "vmInstanceUuid", "diskOfferingUuid", "rootImageUuid", "installPath",
               "type", "format", "size", "actualSize", "deviceId", "state", "status", "isShareable"),
    "iscsi_server": (*_COMMON, "ip", "port", "chapUserName", "state", "iscsiTargets", "iscsiClusterRefs"),
    "iscsi_lun": ("uuid", "name", "wwid", "vendor", "model", "wwn", "serial", "type", "hctl", "path", "state", "size",
                  "source", "iscsiTargetUuid", "scsiLunHostRefs", "createDate", "lastOpDate"),
    "management_node": ("uuid", "hostName", "joinDate", "heartBeat"),
    "tag": ("uuid", "resourceUuid", "resourceType", "tag", "type", "inherent", "createDate", "lastOpDate"),
}

# Query action -> (kind, extra equality filter on the stored record)
QUERIES: dict[str, tuple[str, dict[str, Any]]] = {
    "QueryZone": ("zone", {}),
    "QueryCluster": ("cluster", {}),
    "QueryHost": ("host", {}),
    "QueryPrimaryStorage": ("primary_storage", {}),
    "QuerySharedBlockGroupPrimaryStorage": ("primary_storage", {"type": "SharedBlock"}),
    "QuerySharedBlock": ("shared_block", {}),
    "QueryBackupStorage": ("backup_storage", {}),
    "QueryImage": ("image", {}),
    "QueryL2Network": ("l2", {}),
    "QueryL3Network": ("l3", {}),
    "QueryIpRange": ("ip_range", {}),
    "QueryNetworkServiceProvider": ("provider", {}),
    "QueryInstanceOffering": ("instance_offering", {}),
    "QueryDiskOffering": ("disk_offering", {}),
    "QueryVmInstance": ("vm", {}),
    "QueryVmNic": ("nic", {}),
    "QueryVolume": ("volume", {}),
    "QueryIscsiServer": ("iscsi_server", {}),
    "QueryIscsiLun": ("iscsi_lun", {}),
    "QueryManagementNode": ("management_node", {}),
    "QueryUserTag": ("tag", {"type": "User"}),
    "QuerySystemTag": ("tag", {"type": "System"}),
}


def render(state: SimState, kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """The inventory of one stored record, with derived fields joined in (a deep copy). Keys starting with
    ``_`` are the simulator's own (secrets ZStack never returns, bookkeeping) and are left out."""
    out = {k: copy.deepcopy(v) for k, v in record.items() if not k.startswith("_")}
    if kind == "vm":
        nics = sorted(state.where("nic", vmInstanceUuid=record["uuid"]), key=lambda n: n.get("deviceId", 0))
        out["vmNics"] = [copy.deepcopy(n) for n in nics]
        volumes = sorted(state.where("volume", vmInstanceUuid=record["uuid"]),
                         key=lambda v: (v.get("type") != "Root", v.get("deviceId") or 0))
        out["allVolumes"] = [copy.deepcopy(v) for v in volumes]
    elif kind == "l3":
        out["ipRanges"] = [copy.deepcopy(r) for r in state.where("ip_range", l3NetworkUuid=record["uuid"])]
    elif kind == "primary_storage" and record.get("type") == "SharedBlock":
        blocks = state.where("shared_block", sharedBlockGroupUuid=record["uuid"])
        out["sharedBlocks"] = [copy.deepcopy(b) for b in blocks]
    return out


def rows(state: SimState, query_action: str) -> tuple[str, list[dict[str, Any]]]:
    """Every inventory a Query API ranges over (before conditions), and their kind."""
    kind, equals = QUERIES[query_action]
    if kind == "tag":
        return kind, [copy.deepcopy(t) for t in state.tags.values() if all(t.get(k) == v for k, v in equals.items())]
    if kind == "iscsi_lun":
        return kind, [copy.deepcopy(lun) for server in state.records["iscsi_server"].values()
                      for target in server.get("iscsiTargets", []) for lun in target.get("iscsiLuns", [])]
    return kind, [render(state, kind, r) for r in state.where(kind, **equals)]


def strip_nulls(value: Any) -> Any:
    """``value`` without null fields at any depth (ZStack's Gson omits them)."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value
