"""The health sweep: only changes reach the channel, concurrency is bounded, failures to check are reported."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from services.labs.models import LabState
from services.labs.notifier import NoticeKind
from services.scheduler.health import health_sweep
from tests.scheduler.conftest import World, names

H = timedelta(hours=4)


async def test_only_changes_are_announced(world: World) -> None:
    await world.add_lab("alpha", LabState.READY, expires_in=H)
    await world.add_lab("beta", LabState.EXPIRING, expires_in=H)
    await world.add_lab("building", LabState.PROVISIONING, expires_in=H)

    quiet = await health_sweep(world.ctx)
    assert sorted(quiet.checked) == ["alpha", "beta"] and sorted(quiet.healthy) == ["alpha", "beta"]
    assert world.of(NoticeKind.HEALTH_CHANGED) == [] and sorted(world.health.calls) == ["alpha", "beta"]

    world.health.failing["alpha"] = ["ssh_vm2", "iscsi_portal"]
    summary = await health_sweep(world.ctx)
    assert summary.degraded == {"alpha": ["ssh_vm2", "iscsi_portal"]} and summary.announced == ["alpha degraded"]
    [degraded] = world.of(NoticeKind.HEALTH_CHANGED)
    assert degraded.lab.name == "alpha" and degraded.text == "degraded: ssh_vm2, iscsi_portal"
    assert degraded.details == {"previous": "ok"}
    assert await world.events("alpha", "health:degraded") == ["ssh_vm2,iscsi_portal"]

    assert (await health_sweep(world.ctx)).announced == []  # the same failure is not news

    world.health.failing["alpha"] = ["ssh_vm2"]
    assert (await health_sweep(world.ctx)).announced == ["alpha degraded"]  # failing differently is
    assert world.of(NoticeKind.HEALTH_CHANGED)[-1].details == {"previous": "degraded"}

    del world.health.failing["alpha"]
    assert (await health_sweep(world.ctx)).announced == ["alpha recovered"]
    assert world.of(NoticeKind.HEALTH_CHANGED)[-1].text == "recovered"
    assert await world.events("alpha", "health:recovered") == [""]
    assert (await health_sweep(world.ctx)).announced == []
    assert names(world.of(NoticeKind.HEALTH_CHANGED)) == ["alpha", "alpha", "alpha"]


async def test_a_degradation_seen_first_on_demand_is_still_announced(world: World) -> None:
    """`/lab health` stores a degraded verdict without telling the channel; the sweep must still tell it."""
    await world.add_lab("looked-at", LabState.READY, expires_in=H, health="degraded", health_failing=["kvm_host"])
    world.health.failing["looked-at"] = ["kvm_host"]
    assert (await health_sweep(world.ctx)).announced == ["looked-at degraded"]


async def test_at_most_the_configured_number_of_labs_are_checked_at_once(world: World) -> None:
    for i in range(10):
        await world.add_lab(f"lab{i}", LabState.READY, expires_in=H)
    world.health.delay = 0.05
    summary = await health_sweep(world.ctx)
    assert len(summary.healthy) == 10 and world.health.peak == world.settings.health_concurrency == 3


async def test_a_lab_that_cannot_be_checked_is_reported_and_the_rest_go_on(world: World) -> None:
    await world.add_lab("fine", LabState.READY, expires_in=H)
    await world.add_lab("cursed", LabState.READY, expires_in=H)
    world.health.broken.add("cursed")
    summary = await health_sweep(world.ctx)
    assert not summary.ok and summary.healthy == ["fine"]
    assert summary.errors == {"cursed": "lab cursed uses profile gone, which this labbot does not have"}
    assert "health: could not check cursed: lab cursed uses profile gone, which this labbot does not have" \
        in summary.lines()
    assert world.of(NoticeKind.HEALTH_CHANGED) == []


async def test_a_lab_destroyed_while_checked_is_not_announced(world: World) -> None:
    await world.add_lab("doomed", LabState.READY, expires_in=H)
    world.health.failing["doomed"] = ["outer_vms"]
    real = world.health.__call__

    async def destroyed_meanwhile(lab_id: int):  # type: ignore[no-untyped-def]
        await world.update("doomed", state=LabState.DESTROYING)
        return await real(lab_id)

    world.ctx = dataclasses.replace(world.ctx, health=destroyed_meanwhile)
    summary = await health_sweep(world.ctx)
    assert summary.degraded == {"doomed": ["outer_vms"]} and summary.announced == []
    assert world.of(NoticeKind.HEALTH_CHANGED) == []


async def test_a_dry_run_checks_nothing(world: World) -> None:
    await world.add_lab("ready", LabState.READY, expires_in=H)
    summary = await health_sweep(world.ctx, dry_run=True)
    assert summary.checked == ["ready"] and summary.lines() == ["health: would check ready"]
    assert world.health.calls == [] and world.notices.notices == []
