"""The expiry sweep on SQLite and PostgreSQL: warnings at each offset, destroy at expiry, re-driven destroys."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from services.labs.lifecycle import destroy_backoff
from services.labs.models import LabState
from services.labs.notifier import NoticeKind
from services.labs.service import Actor, LabService
from services.scheduler.expiry import expiry_sweep
from tests.scheduler.conftest import PROFILES, T0, World, names

M = timedelta(minutes=1)


async def test_warns_once_per_offset_and_marks_the_lab_expiring(world: World) -> None:
    await world.add_lab("soon", LabState.READY, expires_in=3 * 60 * M)
    await world.add_lab("later", LabState.READY, expires_in=5 * 60 * M)

    assert (await expiry_sweep(world.ctx, now=T0)).warned == []
    summary = await expiry_sweep(world.ctx, now=T0 + 61 * M)  # 1h59m left: the 2h warning is due
    assert summary.warned == ["soon (2h)"]
    lab = await world.lab("soon")
    assert lab.state == LabState.EXPIRING and lab.warned_offsets == ["2h"]
    [notice] = world.of(NoticeKind.EXPIRY_WARNING)
    assert notice.lab.name == "soon" and notice.actor == "labbot"
    assert notice.details["offset"] == "2h" and notice.details["expires_at"] == T0 + 3 * 60 * M
    assert notice.details["extendable"] is True
    assert notice.details["max_expires_at"] == lab.created_at + PROFILES["sandbox"].max_ttl
    assert "can be extended until" in notice.text

    assert (await expiry_sweep(world.ctx, now=T0 + 62 * M)).warned == []  # nothing twice
    assert (await expiry_sweep(world.ctx, now=T0 + 150 * M)).warned == ["soon (30m)"]
    assert (await world.lab("soon")).warned_offsets == ["2h", "30m"]
    assert names(world.of(NoticeKind.EXPIRY_WARNING)) == ["soon", "soon"]
    at = f"{T0 + 180 * M:%Y-%m-%d %H:%M} UTC"
    assert await world.events("soon", "expiry_warning") == [f"2h before expiry at {at}", f"30m before expiry at {at}"]
    assert (await world.lab("later")).state == LabState.READY and world.kicked == []


async def test_a_lab_that_skipped_an_offset_hears_only_the_nearest(world: World) -> None:
    await world.add_lab("short", LabState.READY, expires_in=20 * M)
    summary = await expiry_sweep(world.ctx, now=T0)
    assert summary.warned == ["short (30m)"]
    assert (await world.lab("short")).warned_offsets == ["2h", "30m"]
    [notice] = world.of(NoticeKind.EXPIRY_WARNING)
    assert notice.details["offset"] == "30m"


async def test_extending_from_the_warning_rearms_the_warnings(world: World) -> None:
    await world.add_lab("ext", LabState.READY, expires_in=20 * M, created_ago=timedelta(hours=1))
    await expiry_sweep(world.ctx, now=T0)
    service = LabService(sessions=world.sessions, settings=world.settings, profiles=PROFILES,
                         notifier=world.notices, clock=lambda: T0)
    extended = await service.extend(Actor("U_OWNER"), "ext", timedelta(hours=4))
    assert extended.state == LabState.READY and (await world.lab("ext")).warned_offsets == []
    assert (await expiry_sweep(world.ctx, now=T0 + 5 * M)).warned == []
    summary = await expiry_sweep(world.ctx, now=extended.expires_at - 110 * M)
    assert summary.warned == ["ext (2h)"] and (await world.lab("ext")).state == LabState.EXPIRING


async def test_a_lab_at_its_maximum_lifetime_is_told_it_cannot_be_extended(world: World) -> None:
    max_ttl = PROFILES["sandbox"].max_ttl
    await world.add_lab("maxed", LabState.READY, expires_in=20 * M, created_ago=max_ttl - 20 * M)
    await expiry_sweep(world.ctx, now=T0)
    [notice] = world.of(NoticeKind.EXPIRY_WARNING)
    assert notice.details["extendable"] is False and "cannot be extended" in notice.text


async def test_expired_labs_are_destroyed_once_whatever_they_were_doing(world: World) -> None:
    await world.add_lab("ready", LabState.READY, expires_in=-M)
    await world.add_lab("warned", LabState.EXPIRING, expires_in=-M, warned_offsets=["2h", "30m"])
    await world.add_lab("broken", LabState.FAILED, expires_in=-M, failed_step="install_zstack", error="boom")
    await world.add_lab("stuck", LabState.PROVISIONING, expires_in=-M)
    await world.add_lab("going", LabState.DESTROYING, expires_in=-M)
    await world.add_lab("alive", LabState.READY, expires_in=3 * 60 * M)

    summary = await expiry_sweep(world.ctx, now=T0)
    assert sorted(summary.expired) == ["broken", "ready", "stuck", "warned"]
    for name in ("ready", "warned", "broken", "stuck"):
        lab = await world.lab(name)
        assert lab.state == LabState.DESTROYING and lab.destroy_requested_by == "labbot"
        assert await world.events(name, "state:destroying") == [f"expired at {lab.expires_at:%Y-%m-%d %H:%M} UTC"]
    destroying = world.of(NoticeKind.DESTROYING)
    assert sorted(names(destroying)) == ["broken", "ready", "stuck", "warned"]
    assert all(n.details["reason"] == "expired" and n.actor == "labbot" for n in destroying)
    assert sorted(world.kicked) == sorted([(await world.lab(n)).id for n in ("ready", "warned", "broken", "stuck")])

    again = await expiry_sweep(world.ctx, now=T0 + M)
    assert again.expired == [] and len(world.of(NoticeKind.DESTROYING)) == 4
    assert (await world.lab("going")).state == LabState.DESTROYING and (await world.lab("alive")).state == "ready"


async def test_a_destroy_that_gave_up_is_retried_with_a_growing_backoff(world: World) -> None:
    await world.add_lab("leaky", LabState.DESTROYING, expires_in=-60 * M)
    await world.fail_destroy("leaky", attempts=5, at=T0)
    first = destroy_backoff(world.settings, 5)
    assert first == timedelta(seconds=60 * 16)

    waiting = await expiry_sweep(world.ctx, now=T0 + first - M)
    assert waiting.redriven == [] and waiting.expired == []
    assert waiting.waiting == [f"leaky (next try {T0 + first:%Y-%m-%d %H:%M} UTC)"]
    assert (await world.lab("leaky")).state == LabState.FAILED

    summary = await expiry_sweep(world.ctx, now=T0 + first)
    assert summary.redriven == ["leaky"]
    lab = await world.lab("leaky")
    assert lab.state == LabState.DESTROYING and lab.next_attempt_at is None and world.kicked == [lab.id]
    [retry] = world.of(NoticeKind.RETRYING)
    assert retry.details["reason"] == "destroy_redrive" and retry.details["attempts"] == 5
    assert "destroy failed 5 times" in retry.text and "still holds vm1" in retry.text

    # The one further attempt fails too: the next round waits twice as long, capped by the settings.
    later = T0 + first + 5 * M
    await world.fail_destroy("leaky", attempts=6, at=later)
    assert destroy_backoff(world.settings, 6) == timedelta(seconds=1920)
    assert (await expiry_sweep(world.ctx, now=later + 31 * M)).redriven == []
    assert (await expiry_sweep(world.ctx, now=later + 32 * M)).redriven == ["leaky"]
    assert destroy_backoff(world.settings, 12) == timedelta(seconds=world.settings.destroy_retry_max_seconds)


async def test_a_dry_run_reports_and_changes_nothing(world: World) -> None:
    await world.add_lab("warn-me", LabState.READY, expires_in=20 * M)
    await world.add_lab("expire-me", LabState.READY, expires_in=-M)
    await world.add_lab("retry-me", LabState.DESTROYING, expires_in=-M)
    await world.fail_destroy("retry-me", attempts=5, at=T0 - timedelta(hours=2))
    before = {n: (await world.lab(n)).version for n in ("warn-me", "expire-me", "retry-me")}

    summary = await expiry_sweep(world.ctx, now=T0, dry_run=True)
    assert (summary.warned, summary.expired, summary.redriven) == (["warn-me (30m)"], ["expire-me"], ["retry-me"])
    assert summary.lines()[0].startswith("expiry: would warn")
    assert {n: (await world.lab(n)).version for n in before} == before
    assert world.notices.notices == [] and world.kicked == []


async def test_racing_sweeps_act_once_per_lab(world: World) -> None:
    """Two processes' sweeps at the same moment: the optimistic lock lets exactly one claim each action."""
    for i in range(4):
        await world.add_lab(f"warn{i}", LabState.READY, expires_in=20 * M)
        await world.add_lab(f"gone{i}", LabState.EXPIRING, expires_in=-M)
    other = dataclasses.replace(world.ctx)  # a second, independent sweeper on the same database and notifier
    a, b = await asyncio.gather(expiry_sweep(world.ctx, now=T0), expiry_sweep(other, now=T0))
    assert sorted(a.warned + b.warned) == [f"warn{i} (30m)" for i in range(4)]
    assert sorted(a.expired + b.expired) == [f"gone{i}" for i in range(4)]
    assert sorted(names(world.of(NoticeKind.EXPIRY_WARNING))) == [f"warn{i}" for i in range(4)]
    assert sorted(names(world.of(NoticeKind.DESTROYING))) == [f"gone{i}" for i in range(4)]
    assert len(world.kicked) == 4
    for i in range(4):
        assert len(await world.events(f"warn{i}", "expiry_warning")) == 1
        assert len(await world.events(f"gone{i}", "state:destroying")) == 1
