"""LabView and StepView values for builder tests (real domain types, fixed clock)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.labs.views import LabView, StepView

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

STEP_NAMES = [
    ("create_vms", "Create VM1 and VM2"),
    ("attach_volume", "Attach the data volume"),
    ("iscsi_target", "Export the iSCSI target"),
    ("install_zstack", "Install ZStack on VM2"),
    ("nested_zone", "Zone, cluster and KVM host"),
    ("nested_storage", "SharedBlock primary storage"),
    ("nested_vm", "Boot the nested VM"),
]


def step(name: str, title: str, state: str, *, minutes_ago: float = 5, seconds: float | None = 60,
         progress: str | None = None, error: str | None = None, output: str | None = None,
         attempt: int = 1) -> StepView:
    started = None if state == "pending" else NOW - timedelta(minutes=minutes_ago)
    finished = started + timedelta(seconds=seconds or 0) if started and state in ("done", "failed") else None
    return StepView(name=name, title=title, state=state, attempt=attempt if state != "pending" else 0,
                    started_at=started, finished_at=finished,
                    duration_seconds=None if state == "pending" else seconds, progress=progress, error=error,
                    output_tail=output)


def steps(states: list[str], **current: Any) -> tuple[StepView, ...]:
    out = []
    for (name, title), state in zip(STEP_NAMES, states, strict=False):
        extra = current if state in ("running", "failed") else {}
        out.append(step(name, title, state, **extra))
    return tuple(out)


def lab(**overrides: Any) -> LabView:
    base = LabView(
        id=7, uuid="0123456789abcdef0123456789abcdef", name="demo", owner="U_ALICE", channel="C_LABS",
        profile="sandbox", state="requested", created_at=NOW - timedelta(minutes=10),
        expires_at=NOW + timedelta(hours=3, minutes=50), destroyed_at=None, ttl_extensions=0, failed_step=None,
        error=None, health="unknown", health_failing=(), vm1_public_ip=None, vm1_vpc_ip=None, vm2_ip=None,
        iscsi_iqn=None, iscsi_wwid=None, progress_ref=None, summary={}, steps=(),
    )
    return replace(base, **overrides)


def in_state(state: str) -> LabView:
    """A representative lab in each state."""
    match state:
        case "requested":
            return lab()
        case "provisioning":
            return lab(state="provisioning",
                       steps=steps(["done", "done", "done", "running", "pending", "pending", "pending"],
                                   progress="installing packages: 45%", seconds=130))
        case "ready" | "expiring":
            return lab(state=state, steps=steps(["done"] * 7), vm1_public_ip="198.18.0.10",
                       vm1_vpc_ip="198.19.0.10", vm2_ip="198.19.0.11",
                       iscsi_iqn="iqn.2026-11.io.labbot:demo", iscsi_wwid="360000000000000000e00000000010001",
                       summary={"primary_storage": "ps-sharedblock (50 GB)", "nested_vm": "nested-vm1 Running",
                                "ui": "http://198.19.0.11:5000", "admin_password": "must-not-show"},
                       health="ok", expires_at=NOW + timedelta(minutes=20 if state == "expiring" else 230))
        case "failed":
            return lab(state="failed", failed_step="install_zstack", error="installer exited with status 3",
                       steps=steps(["done", "done", "done", "failed", "pending", "pending", "pending"],
                                   error="installer exited with status 3", output="line 1\nline 2\nERROR: disk full",
                                   attempt=2))
        case "destroying":
            return lab(state="destroying", steps=steps(["done"] * 7))
        case "destroyed":
            return lab(state="destroyed", destroyed_at=NOW - timedelta(minutes=1), steps=steps(["done"] * 7))
    raise ValueError(state)
