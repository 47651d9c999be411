"""The iSCSI target on VM1 that exports the lab's data disk to VM2 (the nested ZStack's SharedBlock storage).

``backend_for(profile.iscsi.backend, run)`` gives the backend for the lab profile; ``find_data_disk`` and
``read_initiator_name`` supply the device and the ACL's initiator; ``target_iqn`` names the target.
"""

from __future__ import annotations

from services.errors import ConfigError
from services.iscsi.base import IscsiBackend, IscsiError, TargetInfo, TargetSpec
from services.iscsi.disk import find_data_disk
from services.iscsi.initiator import read_initiator_name
from services.iscsi.naming import target_iqn
from services.iscsi.targetcli import TargetcliBackend
from services.iscsi.tgt import TgtBackend
from services.ssh.result import Runner


def backend_for(profile_backend: str, run: Runner) -> IscsiBackend:
    """The backend named in the lab profile (``targetcli`` or ``tgt``), running its commands with ``run`` on VM1."""
    if profile_backend == "targetcli":
        return TargetcliBackend(run)
    if profile_backend == "tgt":
        return TgtBackend(run)
    raise ConfigError(f"unknown iSCSI backend {profile_backend!r} (expected targetcli or tgt)")


__all__ = [
    "IscsiBackend",
    "IscsiError",
    "TargetInfo",
    "TargetSpec",
    "TargetcliBackend",
    "TgtBackend",
    "backend_for",
    "find_data_disk",
    "read_initiator_name",
    "target_iqn",
]
