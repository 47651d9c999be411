"""The lab data model: labs, their steps, their audit events, pinned SSH host keys and health checks."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

import services.claims  # noqa: F401 - its tables (claims, locks) belong to the same schema and migrations
from services.db import Base, UTCDateTime, utcnow


class LabState(enum.StrEnum):
    """Where a lab is in its life (see services.labs.states for the edges)."""

    REQUESTED = "requested"
    PROVISIONING = "provisioning"
    READY = "ready"
    EXPIRING = "expiring"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    FAILED = "failed"


class StepState(enum.StrEnum):
    """Where one pipeline step is."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Health(enum.StrEnum):
    """The last health verdict of a lab."""

    UNKNOWN = "unknown"
    OK = "ok"
    DEGRADED = "degraded"


class Lab(Base):
    """One lab: two outer VMs, a data volume, and the nested ZStack built on them."""

    __tablename__ = "labs"
    __table_args__ = (
        # A name is unique among live labs; destroyed labs keep theirs for the record.
        Index(
            "uq_labs_live_name",
            "name",
            unique=True,
            sqlite_where=text("state != 'destroyed'"),
            postgresql_where=text("state != 'destroyed'"),
        ),
        Index("ix_labs_state_expires", "state", "expires_at"),
        Index("ix_labs_owner_state", "owner", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(31))
    owner: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=LabState.REQUESTED)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ttl_extensions: Mapped[int] = mapped_column(Integer, default=0)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_step: Mapped[str | None] = mapped_column(String(48))
    error: Mapped[str | None] = mapped_column(Text)
    # Set when someone asks to destroy (or the expiry job does); the worker acts on it.
    destroy_requested_by: Mapped[str | None] = mapped_column(String(64))
    destroy_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    warned_offsets: Mapped[list[str]] = mapped_column(JSON, default=list)

    # Outer (lab platform) resources; uuids are chosen before the create call so a retry finds them.
    vm1_uuid: Mapped[str | None] = mapped_column(String(32))
    vm2_uuid: Mapped[str | None] = mapped_column(String(32))
    volume_uuid: Mapped[str | None] = mapped_column(String(32))
    vm1_public_ip: Mapped[str | None] = mapped_column(String(45))
    vm1_vpc_ip: Mapped[str | None] = mapped_column(String(45))
    vm2_ip: Mapped[str | None] = mapped_column(String(45))

    # Credentials labbot made for this lab, encrypted with LABBOT_SECRET_KEY (services.crypto).
    ssh_public_key: Mapped[str | None] = mapped_column(Text)
    ssh_private_key_enc: Mapped[str | None] = mapped_column(Text)
    host_password_enc: Mapped[str | None] = mapped_column(Text)
    # The nested ZStack's admin password (labbot changes the installer's default to it) and the CHAP secret
    # VM2's initiator logs in to VM1's target with: random per lab, so one lab's students cannot use another's.
    nested_password_enc: Mapped[str | None] = mapped_column(Text)
    chap_secret_enc: Mapped[str | None] = mapped_column(Text)

    # iSCSI export of VM1's data disk.
    iscsi_iqn: Mapped[str | None] = mapped_column(String(223))
    iscsi_wwid: Mapped[str | None] = mapped_column(String(80))
    iscsi_size_bytes: Mapped[int | None] = mapped_column(BigInteger)

    # Nested ZStack resource uuids by role (zone, cluster, host, iscsi_server, primary_storage, ...).
    nested_ids: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    health: Mapped[str] = mapped_column(String(16), default=Health.UNKNOWN)
    health_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    health_failing: Mapped[list[str]] = mapped_column(JSON, default=list)

    # Exercise labs (services.labs.exercise): the first step the student does, and the checks' verdicts
    # ({"results": {step: {"done", "detail"}}, "checked_at", "completed_at", "solving"}).
    exercise_start: Mapped[str | None] = mapped_column(String(48))
    exercise: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    # A class's lab (services.labs.classes); ``claimable`` while no student has it yet (the trainer owns it).
    class_id: Mapped[int | None] = mapped_column(ForeignKey("lab_classes.id", ondelete="SET NULL"), index=True)
    claimable: Mapped[bool] = mapped_column(default=False, server_default=text("false"))

    # A warm-pool lab waiting for someone (services.labs.pool), and the digest of the profile it was built from.
    pool: Mapped[bool] = mapped_column(default=False, server_default=text("false"), index=True)
    profile_digest: Mapped[str | None] = mapped_column(String(16))

    # Where the live progress message is (front-end specific reference, e.g. Slack channel + ts).
    progress_ref: Mapped[str | None] = mapped_column(String(128))

    # Work claim: only the lease holder works on the lab until the lease expires.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    steps: Mapped[list[LabStep]] = relationship(
        back_populates="lab", lazy="raise", cascade="all, delete-orphan", order_by="LabStep.id"
    )

    __mapper_args__ = {"version_id_col": version}


class LabClass(Base):
    """A trainer's class: one lab per student, named ``<class>-01`` and on, created and ended together."""

    __tablename__ = "lab_classes"
    __table_args__ = (
        Index(
            "uq_lab_classes_live_name",
            "name",
            unique=True,
            sqlite_where=text("destroyed_at IS NULL"),
            postgresql_where=text("destroyed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(28))
    trainer: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str | None] = mapped_column(String(64))
    exercise_start: Mapped[str | None] = mapped_column(String(48))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Where the class's overview message is (front-end reference), and which expiry reminders went out.
    status_ref: Mapped[str | None] = mapped_column(String(128))
    warned_offsets: Mapped[list[str]] = mapped_column(JSON, default=list)


class LabStep(Base):
    """One pipeline step of a lab, with its latest attempt."""

    __tablename__ = "lab_steps"
    __table_args__ = (UniqueConstraint("lab_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(48))
    state: Mapped[str] = mapped_column(String(16), default=StepState.PENDING)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[str | None] = mapped_column(String(200))
    output_tail: Mapped[str | None] = mapped_column(Text)

    lab: Mapped[Lab] = relationship(back_populates="steps", lazy="raise")

    @property
    def duration_seconds(self) -> float | None:
        """How long the latest attempt ran (so far, if it is running)."""
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        return (end - self.started_at).total_seconds()


class LabEvent(Base):
    """Audit trail: who did what to which lab, and when."""

    __tablename__ = "lab_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lab_id: Mapped[int | None] = mapped_column(ForeignKey("labs.id", ondelete="SET NULL"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(48))
    detail: Mapped[str] = mapped_column(Text, default="")


class HostKey(Base):
    """An SSH host key pinned on first use, per lab host (``vm1``/``vm2``)."""

    __tablename__ = "host_keys"
    __table_args__ = (UniqueConstraint("lab_uuid", "host"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lab_uuid: Mapped[str] = mapped_column(String(32), index=True)
    host: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(Text)
    pinned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HealthCheck(Base):
    """The result of one health check of one lab, with its latency."""

    __tablename__ = "health_checks"
    __table_args__ = (Index("ix_health_checks_lab_at", "lab_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    check: Mapped[str] = mapped_column(String(48))
    ok: Mapped[bool]
    latency_ms: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text, default="")
