"""Other people's labs: logs and on-demand health for owners and admins only; on-demand health limited per lab
and bounded with the sweep; old health rows pruned."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from services.db import utcnow
from services.errors import PermissionDeniedError, QuotaError
from services.labs import repository as repo
from services.labs.build.health import HealthReport
from services.labs.models import HealthCheck
from services.labs.service import Actor
from services.scheduler.health import prune_old_health_rows
from tests.slack.harness import running_bot
from tests.slack.world import Sessions, make_world, settings


def said(body: dict[str, Any]) -> str:
    return json.dumps(body.get("blocks", []), ensure_ascii=False) + str(body.get("text", ""))


async def test_logs_and_health_of_someone_elses_lab_are_refused_over_slack(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1) as h:
        await h.command("create demo --ttl 2h")
        await h.settle()
        await h.command("logs demo", user="U_BOB", hook="bob-logs")
        await h.command("health demo", user="U_BOB", hook="bob-health")
        await h.command("logs demo", user="U_ADMIN", hook="admin-logs")
        await h.settle()
        assert "only <@U_ALICE> (the owner) or an admin can read the logs of lab `demo`" in said(
            h.fake.hook_bodies("bob-logs")[0])
        assert "can check the health of lab `demo`" in said(h.fake.hook_bodies("bob-health")[0])
        assert "only <@U_ALICE>" not in said(h.fake.hook_bodies("admin-logs")[0])


async def test_on_demand_health_is_owner_only_rate_limited_and_bounded(sessions: Sessions) -> None:
    cfg = settings(health_on_demand_interval_seconds=60, health_concurrency=2)
    world = await make_world(sessions, settings_=cfg, start=False)
    running, peak, runs = 0, 0, []
    gate = asyncio.Semaphore(cfg.health_concurrency)  # what Runtime.run_health puts around every run

    async def runner(lab_id: int) -> HealthReport:
        nonlocal running, peak
        async with gate:
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            runs.append(lab_id)
            running -= 1
        return HealthReport(lab=await world.service.view(lab_id), checks=[])

    world.service.health_runner = runner
    world.service.kicker = world.service.lifecycle.kick = None  # the labs stay as this test sets them
    labs = []
    for i in range(5):
        lab = await world.service.create(Actor("U_ALICE" if i < 2 else f"U_{i}"), name=f"lab-{i}",
                                         profile="sandbox")
        labs.append(lab)
    async with sessions() as session, session.begin():
        for lab in labs:
            row = await repo.get(session=session, lab_id=lab.id)
            row.state = "ready"
    with pytest.raises(PermissionDeniedError):
        await world.service.health(Actor("U_BOB"), "lab-0")
    assert runs == []
    await world.service.health(Actor("U_ALICE"), "lab-0")
    with pytest.raises(QuotaError, match="checked on demand less than 60 s ago"):
        await world.service.health(Actor("U_ALICE"), "lab-0")
    with pytest.raises(QuotaError):
        await world.service.health(Actor("U_ADMIN", is_admin=True), "lab-0")
    assert runs == [labs[0].id]
    # Many labs at once: never more than the bound at a time.
    await asyncio.gather(*(world.service.health(Actor("U_ADMIN", is_admin=True), f"lab-{i}") for i in range(1, 5)))
    assert len(runs) == 5 and peak <= 2


async def test_old_health_rows_are_pruned(sessions: Sessions) -> None:
    world = await make_world(sessions, settings_=settings(health_retention_days=7), start=False)
    lab = await world.service.create(Actor("U_ALICE"), name="old", profile="sandbox")
    async with sessions() as session, session.begin():
        await repo.add_health_checks(session=session, lab_id=lab.id, results=[
            HealthCheck(check="ssh_vm1", ok=True, latency_ms=3, at=utcnow() - timedelta(days=days))
            for days in (30, 8, 6, 0)])

    class Ctx:
        def __init__(self) -> None:
            self.sessions, self.settings = sessions, world.settings

    assert await prune_old_health_rows(Ctx()) == 2  # type: ignore[arg-type]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(HealthCheck)) == 2
