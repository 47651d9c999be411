"""The iSCSI backend a lab profile names."""

from __future__ import annotations

from services.errors import ConfigError
from services.iscsi.base import IscsiBackend
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
