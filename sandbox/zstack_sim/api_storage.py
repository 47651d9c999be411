"""Handlers: iSCSI servers, SharedBlock primary storage and primary storage attachment/capacity.

iSCSI discovery is the one place the nested simulator touches the world: ``NestedHooks.discover_iscsi`` runs
a real sendtargets discovery from VM2 in the sandbox (``NoHooks`` returns one synthetic LUN). The LUNs found
become the server's targets, the SharedBlock candidates of the clusters it is attached to, and, by wwid, the
disks of SharedBlock primary storage (zstack-api.md §15).
"""

from __future__ import annotations

import logging
from typing import Any

from sandbox.zstack_sim.api_infra import check_address
from sandbox.zstack_sim.context import Ctx, api
from sandbox.zstack_sim.errors import argerr, operr
from sandbox.zstack_sim.hooks import TargetFound
from sandbox.zstack_sim.store import SimState, new_uuid, zstack_date
from sandbox.zstack_sim.views import render

log = logging.getLogger(__name__)


def _targets(server_uuid: str, ip: str, port: int, found: list[TargetFound],
             previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Discovery results as IscsiTarget/IscsiLun inventories, keeping the uuids of targets and LUNs seen before."""
    old_targets = {t["iqn"]: t for t in previous}
    old_luns = {lun["wwid"]: lun for t in previous for lun in t.get("iscsiLuns", [])}
    targets = []
    for target in found:
        target_uuid = old_targets.get(target.iqn, {}).get("uuid") or new_uuid()
        luns = []
        for lun in target.luns:
            old = old_luns.get(lun.wwid, {})
            luns.append({
                "uuid": old.get("uuid") or new_uuid(), "name": f"{target.iqn}-lun-{lun.lun_id}", "wwid": lun.wwid,
                "vendor": lun.vendor or None, "model": lun.model or None, "serial": lun.serial or None,
                "wwn": f"0x{lun.wwid[-16:]}" if len(lun.wwid) >= 16 else None, "type": "disk",
                "hctl": None, "path": f"/dev/disk/by-path/ip-{ip}:{port}-iscsi-{target.iqn}-lun-{lun.lun_id}",
                "state": "Enabled", "size": lun.size, "source": "iSCSI", "iscsiTargetUuid": target_uuid,
                "scsiLunHostRefs": old.get("scsiLunHostRefs", []), "createDate": old.get("createDate", zstack_date()),
                "lastOpDate": zstack_date(),
            })
        targets.append({"uuid": target_uuid, "iscsiServerUuid": server_uuid, "iqn": target.iqn, "iscsiLuns": luns,
                        "createDate": old_targets.get(target.iqn, {}).get("createDate", zstack_date()),
                        "lastOpDate": zstack_date()})
    return targets


async def _discover(ctx: Ctx, ip: str, port: int, chap: tuple[str, str] | None) -> list[TargetFound]:
    try:
        if chap is not None:  # the agent logs in with the server's CHAP credentials (iscsiadm node.session.auth.*)
            return await ctx.nested_hooks.discover_iscsi(ip, port, chap=chap)
        return await ctx.nested_hooks.discover_iscsi(ip, port)
    except Exception as err:  # the hook's failure is the agent's failure, reported in the job's error
        raise operr(f"failed to discover iSCSI targets on {ip}:{port}: {err}") from err


def used_disks(state: SimState) -> dict[str, str]:
    """wwid -> uuid of the SharedBlock group that uses the disk."""
    return {b["diskUuid"]: b["sharedBlockGroupUuid"] for b in state.records["shared_block"].values()}


@api("AddIscsiServer")
async def add_iscsi_server(ctx: Ctx) -> dict[str, Any]:
    """Register a portal and discover its targets."""
    ip = check_address(str(ctx.text("ip", max_len=64) or ctx.required("ip")), "ip")
    port = ctx.integer("port", default=3260, minimum=1) or 3260
    if port > 65535:
        raise argerr(f"field[port] must be in range of [1, 65535], but got {port}")
    if ctx.state.where("iscsi_server", ip=ip, port=port):
        raise argerr(f"iscsi server[ip:{ip}, port:{port}] has been added")
    uuid = ctx.resource_uuid()
    chap_user, chap = ctx.text("chapUserName", max_len=128), ctx.text("chapUserPassword", max_len=128)
    await ctx.work()
    found = await _discover(ctx, ip, port, (chap_user, chap) if chap_user and chap else None)
    record = {"uuid": uuid, "name": ctx.text("name", max_len=256) or f"iscsi-{ip}", "description": None, "ip": ip,
              "port": port, "chapUserName": ctx.text("chapUserName", max_len=128), "state": "Enabled",
              "iscsiTargets": _targets(uuid, ip, port, found, []), "iscsiClusterRefs": []}
    server = ctx.create("iscsi_server", record)
    if chap:
        server["_chapUserPassword"] = chap  # kept out of every answer, as ZStack keeps it
    return {"inventory": render(ctx.state, "iscsi_server", server)}


@api("AttachIscsiServerToCluster")
async def attach_iscsi_server_to_cluster(ctx: Ctx) -> dict[str, Any]:
    """Log the cluster's connected hosts in to the server's targets (discovery runs again)."""
    server, cluster = ctx.ref("uuid", "iscsi_server"), ctx.ref("clusterUuid", "cluster")
    assert server is not None and cluster is not None
    if any(ref["clusterUuid"] == cluster["uuid"] for ref in server["iscsiClusterRefs"]):
        raise argerr(f"iscsi server[uuid:{server['uuid']}] has been attached to cluster[uuid:{cluster['uuid']}]")
    await ctx.work()
    chap = (server["chapUserName"], server["_chapUserPassword"]) if server.get("_chapUserPassword") else None
    found = await _discover(ctx, server["ip"], server["port"], chap)
    targets = _targets(server["uuid"], server["ip"], server["port"], found, server["iscsiTargets"])
    hosts = ctx.state.where("host", clusterUuid=cluster["uuid"], status="Connected")
    for lun in (lun for t in targets for lun in t["iscsiLuns"]):
        known = {ref["hostUuid"] for ref in lun["scsiLunHostRefs"]}
        lun["scsiLunHostRefs"] += [{"scsiLunUuid": lun["uuid"], "hostUuid": h["uuid"], "path": lun["path"],
                                    "hctl": None} for h in hosts if h["uuid"] not in known]
    refs = [*server["iscsiClusterRefs"], {"iscsiServerUuid": server["uuid"], "clusterUuid": cluster["uuid"],
                                          "createDate": zstack_date(), "lastOpDate": zstack_date()}]
    ctx.state.touch(server, iscsiTargets=targets, iscsiClusterRefs=refs)
    return {"inventory": render(ctx.state, "iscsi_server", server)}


@api("GetSharedBlockCandidate")
async def get_shared_block_candidate(ctx: Ctx) -> dict[str, Any]:
    """LUNs of the iSCSI servers attached to the cluster, when it has a Connected host, minus disks in use."""
    cluster = ctx.ref("clusterUuid", "cluster")
    assert cluster is not None
    if not ctx.state.where("host", clusterUuid=cluster["uuid"], status="Connected"):
        return {"results": []}
    used = used_disks(ctx.state)
    results = []
    for server in ctx.state.records["iscsi_server"].values():
        if not any(ref["clusterUuid"] == cluster["uuid"] for ref in server["iscsiClusterRefs"]):
            continue
        for target in server["iscsiTargets"]:
            for lun in target["iscsiLuns"]:
                if lun["wwid"] in used:
                    continue
                results.append({"wwid": lun["wwid"], "vendor": lun["vendor"], "model": lun["model"],
                                "wwn": lun["wwn"], "serial": lun["serial"], "hctl": lun["hctl"], "type": "disk",
                                "path": lun["path"], "size": lun["size"], "source": "iSCSI", "transport": "iscsi",
                                "targetIdentifier": target["iqn"]})
    return {"results": [{k: v for k, v in r.items() if v is not None} for r in results]}


@api("AddSharedBlockGroupPrimaryStorage")
async def add_shared_block_group_primary_storage(ctx: Ctx) -> dict[str, Any]:
    """SharedBlock primary storage on LUNs given by wwid; capacity is the LUNs' size."""
    zone = ctx.ref("zoneUuid", "zone")
    assert zone is not None
    name = ctx.text("name", max_len=255) or ctx.required("name")
    disks = ctx.required("diskUuids")
    if not isinstance(disks, list) or not all(isinstance(d, str) and d for d in disks):
        raise argerr("field[diskUuids] must be a non-empty list of disk identifiers")
    luns = {lun["wwid"]: lun for s in ctx.state.records["iscsi_server"].values()
            for t in s["iscsiTargets"] for lun in t["iscsiLuns"]}
    used = used_disks(ctx.state)
    for disk in disks:
        if disk in used:
            raise argerr(f"disk[{disk}] has been used by shared block group[uuid:{used[disk]}]")
        if disk not in luns:
            raise operr(f"can not find disk with {disk} as wwid, uuid or wwn, or multiple disks qualify but no mpath "
                        "device found")
    uuid = ctx.resource_uuid()
    await ctx.work()
    total = sum(int(luns[d]["size"]) for d in disks)
    record = {"uuid": uuid, "name": name, "description": ctx.text("description", max_len=2048),
              "zoneUuid": zone["uuid"], "url": ctx.text("url", max_len=2048) or f"sharedblock://{uuid}",
              "totalCapacity": total, "availableCapacity": total, "totalPhysicalCapacity": total,
              "availablePhysicalCapacity": total, "systemUsedCapacity": 0, "type": "SharedBlock", "state": "Enabled",
              "status": "Connected", "mountPath": None, "attachedClusterUuids": [],
              "sharedBlockGroupType": "LvmVolumeGroupBasic"}
    storage = ctx.create("primary_storage", record)
    for disk in disks:
        size = int(luns[disk]["size"])
        ctx.state.add("shared_block", {
            "uuid": new_uuid(), "name": f"disk-{disk}", "description": None, "sharedBlockGroupUuid": uuid,
            "type": "LvmLogicalVolumeBasic", "diskUuid": disk, "state": "Enabled", "status": "Connected",
            "totalCapacity": size, "availableCapacity": size})
    return {"inventory": render(ctx.state, "primary_storage", storage)}


@api("AttachPrimaryStorageToCluster")
async def attach_primary_storage_to_cluster(ctx: Ctx) -> dict[str, Any]:
    """Attach primary storage to a cluster of the same zone."""
    cluster, storage = ctx.ref("clusterUuid", "cluster"), ctx.ref("primaryStorageUuid", "primary_storage")
    assert cluster is not None and storage is not None
    if storage["zoneUuid"] != cluster["zoneUuid"]:
        raise argerr(f"primary storage[uuid:{storage['uuid']}] and cluster[uuid:{cluster['uuid']}] are not in the "
                     "same zone")
    if cluster["uuid"] in storage["attachedClusterUuids"]:
        raise argerr(f"primary storage[uuid:{storage['uuid']}] has been attached to cluster[uuid:{cluster['uuid']}]")
    await ctx.work()
    ctx.state.touch(storage, attachedClusterUuids=[*storage["attachedClusterUuids"], cluster["uuid"]])
    return {"inventory": render(ctx.state, "primary_storage", storage)}


@api("GetPrimaryStorageCapacity")
async def get_primary_storage_capacity(ctx: Ctx) -> dict[str, Any]:
    """Capacity totals of the primary storage in the scope (all of it with ``all``)."""
    zones, clusters = ctx.str_list("zoneUuids"), ctx.str_list("clusterUuids")
    chosen_uuids, everything = ctx.str_list("primaryStorageUuids"), ctx.flag("all")
    if not (zones or clusters or chosen_uuids or everything):
        raise argerr("zoneUuids, clusterUuids or primaryStorageUuids must be set, or all must be true")
    chosen = [p for p in ctx.state.records["primary_storage"].values()
              if everything or p["zoneUuid"] in zones or p["uuid"] in chosen_uuids
              or set(p["attachedClusterUuids"]) & set(clusters)]
    fields = ("totalCapacity", "availableCapacity", "totalPhysicalCapacity", "availablePhysicalCapacity")
    return {f: sum(int(p.get(f) or 0) for p in chosen) for f in fields}


@api("UpdateImageStoreBackupStorage")
async def update_image_store_backup_storage(ctx: Ctx) -> dict[str, Any]:
    """Change the SSH login ZStack keeps for an ImageStore backup storage host, or its name."""
    store = ctx.ref("uuid", "backup_storage")
    assert store is not None
    changes = {key: ctx.text(key, max_len=255) for key in ("name", "username", "password")}
    await ctx.work()
    ctx.state.touch(store, **{k: v for k, v in changes.items() if v is not None})
    return {"inventory": render(ctx.state, "backup_storage", store)}
