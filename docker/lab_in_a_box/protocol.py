"""The files the simulator's hooks and the VM containers' agents share under ``/labs``.

    /labs/<role>/plan.json      the VM the container should be (hooks write; role is vm1 or vm2)
    /labs/<role>/applied.json   the plan generation the agent has applied (agent writes)
    /labs/<role>/volumes/<id>   a data volume attached to the VM (hooks write; content: size in bytes)
    /labs/<role>/linked/<id>    the agent linked it under /dev/disk/by-id (agent writes)
    /labs/disks/<id>.img        the volume's sparse backing file (hooks create and delete)

Every write is atomic (a temporary file renamed into place), so a reader never sees half a plan.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ROLES = ("vm1", "vm2")
DEFAULT_LABS = Path("/labs")


def role_dir(labs: Path, role: str) -> Path:
    """The directory of one VM container's files."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return labs / role


def disk_path(labs: Path, volume_uuid: str) -> Path:
    """The sparse file behind a data volume."""
    if not volume_uuid.isalnum():
        raise ValueError(f"{volume_uuid!r} is not a volume uuid")
    return labs / "disks" / f"{volume_uuid}.img"


def write_json(path: Path, data: dict[str, Any], *, private: bool = False) -> None:
    """Replace ``path`` atomically with ``data`` (mode 0600 when it holds a secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.replace(temporary, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when there is none (or it is not an object)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def netmask_prefix(netmask: str) -> int:
    """``255.255.252.0`` → 22."""
    return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
