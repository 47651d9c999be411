"""LIO configuration as JSON (rtslib-fb's ``RTSRoot().dump()``, the format of /etc/target/saveconfig.json).

Pure functions over that document: find a lab's objects in it, and merge them into (or drop them from) the saved
configuration without touching other labs' entries, which is what "save only this lab's configuration" means:
``targetcli saveconfig`` would also persist whatever else happens to be live, half-finished work included.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Config = dict[str, Any]


@dataclass(frozen=True)
class LioLun:
    """A LUN of a target's TPG and the block storage object behind it."""

    index: int
    storage_object: str  # e.g. /backstores/block/labbot-lab1
    dev: str
    wwn: str  # the storage object's unit serial


@dataclass(frozen=True)
class LioTarget:
    """What labbot needs to know about one iSCSI target's first TPG."""

    iqn: str
    tag: int
    luns: list[LioLun]
    acls: dict[str, list[int]]  # initiator IQN -> mapped TPG LUN indexes
    portals: list[tuple[str, int]]
    generate_node_acls: bool
    chap: dict[str, tuple[str, str]] = field(default_factory=dict)  # initiator IQN -> (userid, password)
    authentication: bool = False  # the TPG's ``authentication`` attribute: CHAP required at login


def empty() -> Config:
    """An empty configuration (what a host without saveconfig.json has)."""
    return {"fabric_modules": [], "storage_objects": [], "targets": []}


def parse(text: str) -> Config:
    """A dump or saveconfig.json; an empty text is an empty configuration."""
    if not text.strip():
        return empty()
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("LIO configuration must be a JSON object")
    for key in ("fabric_modules", "storage_objects", "targets"):
        data.setdefault(key, [])
    return data


def render(config: Config) -> str:
    """Stable JSON text for saveconfig.json."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def so_path(name: str) -> str:
    """The path a LUN uses to refer to a block storage object."""
    return f"/backstores/block/{name}"


def find_storage_object(config: Config, name: str) -> dict[str, Any] | None:
    """The block storage object called ``name``."""
    return next(
        (so for so in config["storage_objects"] if so.get("plugin") == "block" and so.get("name") == name), None
    )


def find_target(config: Config, iqn: str) -> LioTarget | None:
    """The iSCSI target ``iqn`` with its first TPG, or None."""
    raw = next((t for t in config["targets"] if t.get("fabric") == "iscsi" and t.get("wwn") == iqn), None)
    if raw is None:
        return None
    tpgs = sorted(raw.get("tpgs", []), key=lambda tpg: tpg.get("tag", 0))
    if not tpgs:
        return LioTarget(iqn=iqn, tag=1, luns=[], acls={}, portals=[], generate_node_acls=False)
    tpg = tpgs[0]
    objects = {so_path(so["name"]): so for so in config["storage_objects"] if so.get("plugin") == "block"}
    luns = []
    for lun in tpg.get("luns", []):
        so = objects.get(lun.get("storage_object", ""))
        if so is not None:
            luns.append(LioLun(int(lun["index"]), lun["storage_object"], so.get("dev", ""), so.get("wwn", "")))
    acls = {
        acl["node_wwn"]: sorted(int(m.get("tpg_lun", m.get("index", 0))) for m in acl.get("mapped_luns", []))
        for acl in tpg.get("node_acls", [])
    }
    portals = [(p.get("ip_address", ""), int(p.get("port", 0))) for p in tpg.get("portals", [])]
    generate = str(tpg.get("attributes", {}).get("generate_node_acls", 0)) == "1"
    chap = {acl["node_wwn"]: (str(acl.get("chap_userid", "")), str(acl.get("chap_password", "")))
            for acl in tpg.get("node_acls", []) if acl.get("chap_userid")}
    authentication = str(tpg.get("attributes", {}).get("authentication", 0)) == "1"
    return LioTarget(
        iqn=iqn, tag=int(tpg.get("tag", 1)), luns=luns, acls=acls, portals=portals, generate_node_acls=generate,
        chap=chap, authentication=authentication,
    )


def _without(saved: Config, iqn: str, so_name: str) -> Config:
    result = dict(saved)
    result["storage_objects"] = [
        so for so in saved["storage_objects"] if not (so.get("plugin") == "block" and so.get("name") == so_name)
    ]
    result["targets"] = [t for t in saved["targets"] if not (t.get("fabric") == "iscsi" and t.get("wwn") == iqn)]
    return result


def merge_lab(saved: Config, live: Config, iqn: str, so_name: str) -> Config:
    """``saved`` with this lab's storage object and target replaced by their live versions; the rest untouched."""
    result = _without(saved, iqn, so_name)
    so = find_storage_object(live, so_name)
    target = next((t for t in live["targets"] if t.get("fabric") == "iscsi" and t.get("wwn") == iqn), None)
    if so is not None:
        result["storage_objects"] = [*result["storage_objects"], so]
    if target is not None:
        result["targets"] = [*result["targets"], target]
    return result


def remove_lab(saved: Config, iqn: str, so_name: str) -> Config:
    """``saved`` without this lab's storage object and target."""
    return _without(saved, iqn, so_name)
