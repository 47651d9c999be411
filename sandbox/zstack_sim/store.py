"""The simulator's one in-memory model: resources by kind, tags, sessions and jobs.

Records are stored as ZStack inventories (camelCase JSON) minus the fields derived from other records
(a VM's NICs and volumes, an L3's IP ranges ...), which ``views.render`` joins in when answering. Every
mutation is a plain synchronous method: handlers never await while the model is half-changed, so on the
simulator's single event loop concurrent requests cannot interleave inside a check-then-act.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sandbox.zstack_sim.errors import not_found

log = logging.getLogger(__name__)

Role = Literal["outer", "nested"]

# kind -> (the VO class name ZStack's errors use, the resourceType of its tags)
KINDS: dict[str, str] = {
    "zone": "ZoneVO",
    "cluster": "ClusterVO",
    "host": "HostVO",
    "primary_storage": "PrimaryStorageVO",
    "shared_block": "SharedBlockVO",
    "backup_storage": "BackupStorageVO",
    "image": "ImageVO",
    "l2": "L2NetworkVO",
    "l3": "L3NetworkVO",
    "ip_range": "IpRangeVO",
    "provider": "NetworkServiceProviderVO",
    "instance_offering": "InstanceOfferingVO",
    "disk_offering": "DiskOfferingVO",
    "vm": "VmInstanceVO",
    "nic": "VmNicVO",
    "volume": "VolumeVO",
    "iscsi_server": "IscsiServerVO",
    "management_node": "ManagementNodeVO",
}

ADMIN_UUID = "36c27e8ff05c4780bf6d2fa65700f22e"


def new_uuid() -> str:
    """A ZStack uuid (uuid4 hex, no dashes)."""
    return uuidlib.uuid4().hex


def zstack_date(when: datetime | None = None) -> str:
    """A date as ZStack's Gson writes it: ``Nov 14, 2017 10:20:57 PM``."""
    when = when or datetime.now(UTC)
    return f"{when:%b} {when.day}, {when.year} {when.hour % 12 or 12}:{when:%M:%S %p}"


@dataclass
class Session:
    """A login session; it expires ``timeout`` seconds after it was made."""

    uuid: str
    account_uuid: str
    expires_at: float


@dataclass
class Job:
    """An async API call: 202 while running, then 200 with ``body`` or 503 with ``{"error": ...}``."""

    uuid: str
    action: str
    created_at: float
    status: int | None = None  # None while running
    body: dict[str, Any] = field(default_factory=dict)
    finished_at: float | None = None
    polls: int = 0
    polls_after_done: int = 0  # 1 = the poll that fetched the result; more means a client kept polling
    result_seen_at: float | None = None  # when a poll first fetched the result (for lateness measurements)


class SimState:
    """Everything the simulator knows. Tests read it (``sim.state``) to prove no duplicates and no leaks."""

    def __init__(self, role: Role, *, session_timeout: float = 7200.0, job_retention: float = 10800.0) -> None:
        self.role = role
        self.session_timeout = session_timeout
        self.job_retention = job_retention
        self.records: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self.tags: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, Session] = {}
        self.jobs: dict[str, Job] = {}
        self.accounts: dict[str, tuple[str, str]] = {}  # name -> (uuid, sha512 hex of the password)
        self.calls: dict[str, int] = {}  # action -> how many times it was executed (not rejected at the door)
        self.ready = True  # IsReadyToGo answers SYS.1010 while False
        self.new_host_hardware = (8, 16 * 1024**3)  # (cores, memory bytes) AddKVMHost finds on a host
        # (resourceUuid, category, name) -> value set with UpdateResourceConfig
        self.resource_configs: dict[tuple[str, str, str], str] = {}

    # --- resources -------------------------------------------------------------------------------

    def taken(self, uuid: str) -> bool:
        """Whether any resource or tag has this uuid (ZStack's ResourceVO uuids are global)."""
        return uuid in self.tags or any(uuid in records for records in self.records.values())

    def add(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        """Store a new record (its ``uuid`` must be free) and return it."""
        if self.taken(record["uuid"]):
            raise ValueError(f"uuid {record['uuid']} is already taken")
        now = zstack_date()
        record.setdefault("createDate", now)
        record.setdefault("lastOpDate", now)
        self.records[kind][record["uuid"]] = record
        return record

    def get(self, kind: str, uuid: str | None) -> dict[str, Any] | None:
        """The record, or None."""
        return self.records[kind].get(uuid) if uuid else None

    def require(self, kind: str, uuid: str | None, field_name: str) -> dict[str, Any]:
        """The record, or the SYS.1003 error the API interceptor gives for ``field_name``."""
        record = self.get(kind, uuid)
        if record is None:
            raise not_found(field_name, str(uuid), KINDS[kind])
        return record

    def touch(self, record: dict[str, Any], **changes: Any) -> dict[str, Any]:
        """Apply changes to a record and bump its ``lastOpDate``."""
        record.update(changes)
        record["lastOpDate"] = zstack_date()
        return record

    def remove(self, kind: str, uuid: str) -> None:
        """Delete a record and every tag on it."""
        self.records[kind].pop(uuid, None)
        for tag_uuid in [t for t, tag in self.tags.items() if tag["resourceUuid"] == uuid]:
            del self.tags[tag_uuid]

    def where(self, kind: str, **equals: Any) -> list[dict[str, Any]]:
        """Records whose fields equal the given values, in creation order."""
        return [r for r in self.records[kind].values() if all(r.get(k) == v for k, v in equals.items())]

    # --- tags ------------------------------------------------------------------------------------

    def add_tags(self, resource_uuid: str, kind: str, system_tags: Iterable[str], user_tags: Iterable[str]) -> None:
        """Attach system and user tags to a resource (kept for queries and ``__userTag__`` conditions)."""
        for tag_type, tags in (("System", system_tags), ("User", user_tags)):
            for tag in tags:
                tag_uuid = new_uuid()
                self.tags[tag_uuid] = {"uuid": tag_uuid, "resourceUuid": resource_uuid, "resourceType": KINDS[kind],
                                       "tag": tag, "type": tag_type, "inherent": False, "createDate": zstack_date(),
                                       "lastOpDate": zstack_date()}

    def tags_of(self, resource_uuid: str, tag_type: str) -> list[str]:
        """The tag texts of one type (``User`` or ``System``) on a resource."""
        return [t["tag"] for t in self.tags.values() if t["resourceUuid"] == resource_uuid and t["type"] == tag_type]

    # --- sessions --------------------------------------------------------------------------------

    def open_session(self, account_uuid: str) -> Session:
        """A new session for an account."""
        session = Session(new_uuid(), account_uuid, time.monotonic() + self.session_timeout)
        self.sessions[session.uuid] = session
        return session

    def live_session(self, uuid: str) -> Session | None:
        """The session if it exists and has not expired."""
        session = self.sessions.get(uuid)
        if session is None or session.expires_at <= time.monotonic():
            return None
        return session

    def expire_sessions(self) -> int:
        """Expire every session now (what ``session.timeout`` would do); returns how many there were."""
        count = len(self.sessions)
        for session in self.sessions.values():
            session.expires_at = 0.0
        return count

    # --- jobs ------------------------------------------------------------------------------------

    def forget_old_jobs(self) -> None:
        """Drop finished jobs older than ``job_retention`` (their uuid then answers 404)."""
        cutoff = time.monotonic() - self.job_retention
        for job_uuid in [j.uuid for j in self.jobs.values() if j.finished_at is not None and j.finished_at < cutoff]:
            del self.jobs[job_uuid]

    # --- read access for tests -------------------------------------------------------------------

    def list(self, kind: str, **equals: Any) -> list[dict[str, Any]]:
        """Deep copies of the matching records (tests may look, not touch)."""
        return [copy.deepcopy(r) for r in self.where(kind, **equals)]

    def count(self, kind: str, **equals: Any) -> int:
        """How many records of a kind match."""
        return len(self.where(kind, **equals))

    def executed(self, action: str) -> int:
        """How many times an action was executed (handler run), e.g. to prove a retry did not run it twice."""
        return self.calls.get(action, 0)
