"""The lab's picture as facts: what the course draws (the computer → the platform → VM1's three roles → VM2's
ZStack → the nested VM, and the three data flows), filled in with this lab's real addresses, names and ids.

Front ends draw it (``bot.picture``: a Graphviz PNG, or a text tree); nothing here knows how. Every fact comes
from the lab's record and its profile, so the picture shows the lab as it was built, not as it should be.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from config.profiles import LabProfile
from services.i18n import _
from services.labs.models import Lab, LabStep

_LUN_IN_OUTPUT = re.compile(r"\bLUN (\d{1,5})\b")


@dataclass(frozen=True)
class Flow:
    """One data flow the course teaches: who talks to whom, on which port, carrying what."""

    key: str  # iscsi | ui | api
    source: str  # a node key of the picture
    target: str
    port: int
    label: str


@dataclass(frozen=True)
class LabPicture:
    """Everything the lab's diagram shows (missing facts are None: a lab not fully built draws what it has)."""

    lab: str
    state: str
    profile: str
    vm1_public_ip: str | None
    vm1_vpc_ip: str | None
    vm2_ip: str | None
    ssh_port: int
    iscsi_backend: str
    iscsi_port: int
    iscsi_iqn: str | None
    iscsi_lun: int | None
    iscsi_wwid: str | None
    disk_gb: int
    ui_port: int
    api_port: int
    zone: str | None
    cluster: str | None
    host: str | None
    primary_storage: str | None
    nested_vm: str | None
    flows: tuple[Flow, ...]

    @property
    def portal(self) -> str | None:
        """The iSCSI portal VM2's initiator logs in to (VM1's VPC address and port)."""
        return f"{self.vm1_vpc_ip}:{self.iscsi_port}" if self.vm1_vpc_ip else None


def build_picture(lab: Lab, profile: LabProfile, steps: list[LabStep] | None = None) -> LabPicture:
    """The picture of one lab from its record, its profile and (for the LUN number) its iSCSI step's output."""
    ids = lab.nested_ids or {}
    nested = profile.nested
    return LabPicture(
        lab=lab.name,
        state=lab.state,
        profile=lab.profile,
        vm1_public_ip=lab.vm1_public_ip,
        vm1_vpc_ip=lab.vm1_vpc_ip,
        vm2_ip=lab.vm2_ip,
        ssh_port=profile.vm1.ssh_port,
        iscsi_backend=profile.iscsi.backend,
        iscsi_port=profile.iscsi.port,
        iscsi_iqn=lab.iscsi_iqn,
        iscsi_lun=_lun(steps or []),
        iscsi_wwid=lab.iscsi_wwid,
        disk_gb=profile.data_volume.size_gb,
        ui_port=profile.install.ui_port,
        api_port=profile.install.api_port,
        zone=nested.zone if "zone" in ids else None,
        cluster=nested.cluster if "cluster" in ids else None,
        host=f"{lab.name}-vm2" if "host" in ids else None,
        primary_storage=nested.primary_storage if "primary_storage" in ids else None,
        nested_vm=nested.vm_name if "vm" in ids else None,
        flows=lab_flows(profile),
    )


def lab_flows(profile: LabProfile) -> tuple[Flow, ...]:
    """The three flows: storage (VM2's initiator → VM1's target), the UI and the API (through VM1 to VM2)."""
    return (
        Flow("iscsi", "vm2", "vm1", profile.iscsi.port, _("iSCSI: VM2's initiator → VM1's target")),
        Flow("ui", "vm1", "vm2", profile.install.ui_port, _("ZStack UI, tunnelled through VM1 (ssh -L)")),
        Flow("api", "vm1", "vm2", profile.install.api_port, _("ZStack API, tunnelled through VM1")),
    )


def _lun(steps: list[LabStep]) -> int | None:
    """The LUN number the iSCSI step reported (``target … LUN n on …``); tgt and LIO number LUNs differently."""
    for step in steps:
        if step.name == "iscsi_target" and step.output_tail:
            match = _LUN_IN_OUTPUT.search(step.output_tail)
            if match:
                return int(match.group(1))
    return None
