"""The orphan sweep: what labbot made on the lab platform that no live lab owns any more.

labbot marks every outer VM, volume and lab network (L3 and its VXLAN L2) twice: its name starts with
``<resource_prefix>-`` and it carries the user tag ``labbot::lab::<lab uuid>``. The sweep lists every kind of
marked resource and sorts them:

* owned: the tag (or the recorded VM/volume uuid) points at a live lab of this labbot → left alone;
* tagged with another prefix: another labbot deployment's (same tag, different name prefix) → ignored;
* **orphan**: both marks, and the tagged lab is destroyed in this labbot's database → reported, and deleted
  once it has been an orphan for ``orphan_grace_minutes`` if (and only if) ``orphan_delete`` is on;
* **unconfirmed**: one mark only, or a tagged lab this database never knew → reported, never deleted: a
  person decides (it may belong to another deployment, or to a database that was reset).

When each orphan was first seen is an audit event (``orphan_seen``), so the grace period survives restarts
and changes of leader. The platform is read before the database: a lab row is committed before any of its
resources exist, so a resource seen on the platform always finds its live lab in the later read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.errors import ExternalError
from services.i18n import _
from services.labs import repository as repo
from services.labs.build.dag import describe_error
from services.labs.lifecycle import SYSTEM
from services.labs.models import Lab, LabState
from services.labs.notifier import OrphanReport, report_orphans
from services.scheduler.context import SweepContext, clock_or_now
from services.zstack.client import ZStackClient
from services.zstack.query import like

log = logging.getLogger(__name__)

TAG_PREFIX = "labbot::lab::"
SEEN_EVENT = "orphan_seen"
DELETED_EVENT = "orphan_deleted"
REPORT_EVENT = "orphans_reported"
# In deletion order: VMs free their volumes and NICs, an L3 network goes before the L2 it sits on.
_QUERIES = (("vm", "QueryVmInstance"), ("volume", "QueryVolume"), ("l3 network", "QueryL3Network"),
            ("l2 network", "QueryL2Network"))
_ORDER = {kind: index for index, (kind, _) in enumerate(_QUERIES)}
_UUID_WIDTH = 32  # ZStack uuids: 32 hex digits, the key of the orphan_seen events


@dataclass(frozen=True)
class PlatformResource:
    """A VM, data volume or network on the lab platform that carries one of labbot's marks."""

    kind: str
    uuid: str
    name: str
    state: str | None
    lab_uuid: str | None


@dataclass(frozen=True)
class Orphan:
    """A marked resource no live lab owns; ``deletable`` only when both marks and a destroyed lab agree."""

    resource: PlatformResource
    why: str
    deletable: bool
    first_seen: datetime
    lab: Lab | None = None

    @property
    def label(self) -> str:
        """``vm labbot-demo-vm1`` (or the uuid when the resource has no name)."""
        return f"{self.resource.kind} {self.resource.name or self.resource.uuid}"


@dataclass
class OrphanSummary:
    """What one orphan sweep found and did."""

    dry_run: bool = False
    delete_enabled: bool = False
    grace: timedelta = timedelta(0)
    scanned: int = 0
    orphans: list[Orphan] = field(default_factory=list)
    new: list[Orphan] = field(default_factory=list)
    deleted: list[Orphan] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    reported: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        """False when the platform could not be read or a deletion failed."""
        return self.error is None and not self.failed

    @property
    def acted(self) -> bool:
        """Whether anything worth logging happened."""
        return bool(self.new or self.deleted or self.failed or self.reported or self.error)

    def lines(self) -> list[str]:
        """A short report for ``labbot sweep`` and the scheduler's log."""
        if self.error:
            return [_("orphans: could not read the lab platform: {error}").format(error=self.error)]
        lines = [
            _("orphans: {len} of {scanned} marked resources are orphans").format(
                len=len(self.orphans), scanned=self.scanned
            )
        ]
        lines += [
            _("orphans: {label} ({uuid}): {why}").format(label=o.label, uuid=o.resource.uuid, why=o.why)
            for o in self.orphans
        ]
        if self.deleted:
            lines.append(_("orphans: deleted {join}").format(join=", ".join(o.label for o in self.deleted)))
        lines += [
            _("orphans: could not delete {uuid}: {error}").format(uuid=uuid, error=error)
            for uuid, error in self.failed.items()
        ]
        if self.dry_run:
            lines.append(_("orphans: dry run, nothing recorded, deleted or reported"))
        elif self.orphans and not self.delete_enabled:
            lines.append(_("orphans: deletion is off (LABBOT_ORPHAN_DELETE); nothing deleted"))
        return lines


async def scan_platform(platform: ZStackClient, prefix: str) -> list[PlatformResource]:
    """Every VM and data volume with labbot's tag or name prefix, with the lab uuid its tag names."""
    lab_of = {
        t.resource_uuid: t.tag.removeprefix(TAG_PREFIX)
        for t in await platform.query_user_tags(f"{TAG_PREFIX}%")
        if t.tag.startswith(TAG_PREFIX)
    }
    found: dict[str, PlatformResource] = {}
    for kind, action in _QUERIES:
        tagged = await platform.query(action, [like("__userTag__", f"{TAG_PREFIX}%")])
        named = await platform.query(action, [like("name", f"{prefix}-%")])
        for item in [*tagged, *named]:
            if kind == "volume" and item.get("type") not in (None, "Data"):
                continue  # root volumes go with their VM
            uuid = str(item["uuid"])
            state = item.get("status") if kind == "volume" else item.get("state")
            found[uuid] = PlatformResource(kind, uuid, str(item.get("name") or ""), state, lab_of.get(uuid))
    return sorted(found.values(), key=lambda r: (_ORDER[r.kind], r.name, r.uuid))


def classify(
    resource: PlatformResource, *, prefix: str, owners: dict[str, str], labs: dict[str, Lab]
) -> tuple[str, bool, Lab | None] | None:
    """``(why, deletable, lab)`` for an orphan; None for a resource some live lab (or another labbot) owns."""
    named = resource.name.startswith(f"{prefix}-")
    if resource.uuid in owners:
        return None
    if resource.lab_uuid is None:
        return (_("named like labbot's resources but carries no labbot tag"), False, None) if named else None
    lab = labs.get(resource.lab_uuid)
    if lab is not None and lab.state != LabState.DESTROYED:
        return None
    if not named:
        return None  # the tag is labbot's, the name prefix another deployment's
    if lab is None:
        return (
            _("its tag names lab {lab_uuid}, which this labbot's database does not know").format(
                lab_uuid=resource.lab_uuid
            ),
            False,
            None,
        )
    when = _(" at {destroyed_at:%Y-%m-%d %H:%M} UTC").format(destroyed_at=lab.destroyed_at) if lab.destroyed_at else ""
    return _("lab {name} was destroyed{when}").format(name=lab.name, when=when), True, lab


async def orphan_sweep(ctx: SweepContext, *, now: datetime | None = None, dry_run: bool = False) -> OrphanSummary:
    """Find orphans, remember when each was first seen, delete the overdue ones if allowed, tell the admins."""
    now = clock_or_now(now)
    settings = ctx.settings
    summary = OrphanSummary(
        dry_run=dry_run, delete_enabled=settings.orphan_delete, grace=timedelta(minutes=settings.orphan_grace_minutes)
    )
    try:
        resources = await scan_platform(ctx.platform, settings.resource_prefix)
    except ExternalError as err:
        summary.error = err.user_message
        log.warning("orphan sweep could not read the lab platform: %s", summary.error)
        return summary
    summary.scanned = len(resources)
    async with ctx.sessions() as session:
        owners = await repo.live_resource_owners(session=session)
        labs = await repo.labs_by_uuid(session=session, uuids=[r.lab_uuid for r in resources if r.lab_uuid])
        seen = await repo.first_seen(
            session=session, kind=SEEN_EVENT, keys=[r.uuid for r in resources if len(r.uuid) == _UUID_WIDTH]
        )
    for resource in resources:
        verdict = classify(resource, prefix=settings.resource_prefix, owners=owners, labs=labs)
        if verdict is not None:
            why, deletable, lab = verdict
            orphan = Orphan(resource, why, deletable, seen.get(resource.uuid, now), lab)
            summary.orphans.append(orphan)
            if resource.uuid not in seen:
                summary.new.append(orphan)
    if dry_run:
        return summary
    await _record(ctx, SEEN_EVENT, summary.new, now)
    if settings.orphan_delete:
        await _delete_overdue(ctx, summary, now)
    await _report(ctx, summary, now)
    if summary.acted:
        log.info("orphan sweep: %s", "; ".join(summary.lines()))
    return summary


async def _record(ctx: SweepContext, kind: str, orphans: Sequence[Orphan], now: datetime) -> None:
    """One audit event per orphan, keyed by its uuid; stamped with the sweep's clock, as grace is measured."""
    if not orphans:
        return
    async with ctx.sessions() as session, session.begin():
        for orphan in orphans:
            r = orphan.resource
            await repo.add_event_at(
                session=session,
                lab_id=orphan.lab.id if orphan.lab else None,
                actor=SYSTEM,
                kind=kind,
                detail=f"{r.uuid} {r.kind} {r.name or '-'}: {orphan.why}",
                at=now,
            )


async def _delete_overdue(ctx: SweepContext, summary: OrphanSummary, now: datetime) -> None:
    """Delete deletable orphans past their grace period, in ``_QUERIES`` order (VMs first, so their volumes
    and NICs are freed)."""
    for orphan in summary.orphans:
        if not orphan.deletable or now < orphan.first_seen + summary.grace:
            continue
        try:
            kind, uuid = orphan.resource.kind, orphan.resource.uuid
            if kind == "vm":
                await ctx.platform.compute.expunge_vm(uuid)
            elif kind == "volume":
                await ctx.platform.compute.expunge_data_volume(uuid)
            elif kind == "l3 network":
                await ctx.platform.network.delete_l3_network(uuid)
            else:
                await ctx.platform.network.delete_l2_network(uuid)
        except Exception as err:
            summary.failed[orphan.resource.uuid] = describe_error(err)
            log.warning(
                "orphan sweep could not delete %s: %s",
                orphan.label,
                summary.failed[orphan.resource.uuid],
                exc_info=not isinstance(err, ExternalError),
            )
            continue
        summary.deleted.append(orphan)
    await _record(ctx, DELETED_EVENT, summary.deleted, now)


async def _report(ctx: SweepContext, summary: OrphanSummary, now: datetime) -> None:
    """Tell the admins about new orphans, deletions and failures; remind them of old ones now and then."""
    async with ctx.sessions() as session:
        last = await repo.last_event_at(session=session, kind=REPORT_EVENT)
    reminder_due = bool(summary.orphans) and (
        last is None or now - last >= timedelta(hours=ctx.settings.orphan_report_hours)
    )
    if not (summary.new or summary.deleted or summary.failed or reminder_due):
        return
    deleted = {o.resource.uuid for o in summary.deleted}
    details: dict[str, str] = {}
    for orphan in summary.orphans:
        details[orphan.label] = f"{orphan.resource.uuid}; {orphan.why}; {_fate(orphan, summary, deleted)}"
    text = _("{len} resource(s) on the lab platform that no live lab owns").format(len=len(summary.orphans))
    if summary.deleted:
        text += _("; deleted {len}").format(len=len(summary.deleted))
    if summary.failed:
        text += _("; {len} could not be deleted").format(len=len(summary.failed))
    if not summary.delete_enabled:
        text += _("; automatic deletion is off (LABBOT_ORPHAN_DELETE), so nothing is deleted")
    await report_orphans(ctx.notifier, OrphanReport(text=text, resources=details, channel=ctx.settings.channel,
                                                    at=now))
    async with ctx.sessions() as session, session.begin():
        await repo.add_event_at(
            session=session,
            lab_id=None,
            actor=SYSTEM,
            kind=REPORT_EVENT,
            at=now,
            detail=_("{len} orphans, {len2} new, {len3} deleted, {len4} failed").format(
                len=len(summary.orphans), len2=len(summary.new), len3=len(summary.deleted), len4=len(summary.failed)
            ),
        )
    summary.reported = True


def _fate(orphan: Orphan, summary: OrphanSummary, deleted: set[str]) -> str:
    uuid = orphan.resource.uuid
    if uuid in deleted:
        return "deleted"
    if uuid in summary.failed:
        return _("delete failed: {value}").format(value=summary.failed[uuid])
    if not orphan.deletable:
        return _("never deleted automatically: check it by hand")
    if not summary.delete_enabled:
        return _("first seen {first_seen:%Y-%m-%d %H:%M} UTC; kept (deletion is off)").format(
            first_seen=orphan.first_seen
        )
    due = orphan.first_seen + summary.grace
    return _("first seen {first_seen:%Y-%m-%d %H:%M} UTC; deleted from {due:%Y-%m-%d %H:%M} UTC on").format(
        first_seen=orphan.first_seen, due=due
    )
