"""Quotas under races: concurrent creates count and insert atomically, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from services.errors import QuotaError
from services.labs.service import Actor
from tests.slack.world import Sessions, make_world, settings


async def _race(world, actors: list[Actor]) -> tuple[int, list[BaseException]]:
    results = await asyncio.gather(*(world.service.create(actor, name=f"race-{i}", profile="sandbox")
                                     for i, actor in enumerate(actors)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    return len(results) - len(refused), refused


async def test_eight_concurrent_creates_from_one_user_make_two_labs(sessions: Sessions) -> None:
    world = await make_world(sessions, settings_=settings(max_labs_per_user=2), start=False)
    made, refused = await _race(world, [Actor("U_ALICE")] * 8)
    assert made == 2
    assert all(isinstance(err, QuotaError) for err in refused), refused
    assert len(await world.service.list_labs(Actor("U_ALICE"))) == 2


async def test_the_global_quota_holds_under_concurrent_creates(sessions: Sessions) -> None:
    world = await make_world(sessions, settings_=settings(max_labs_per_user=2, max_labs_total=3), start=False)
    made, refused = await _race(world, [Actor(f"U_{i}") for i in range(8)])
    assert made == 3
    assert all(isinstance(err, QuotaError) and "global limit" in str(err) for err in refused), refused
