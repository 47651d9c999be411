"""The warm pool at the service level on SQLite and PostgreSQL: claims race safely, the refill keeps the target
within the quota, and stale, failed or unhealthy pool labs are retired."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from config.profiles import PoolSpec
from services.labs.models import Health, LabState
from services.labs.pool import POOL_OWNER, profile_digest
from services.labs.service import Actor
from tests.scheduler.conftest import World


def pooled(world: World, size: int) -> None:
    profile = world.rt.service.profiles["sandbox"]
    world.rt.service.profiles["sandbox"] = profile.model_copy(update={"pool": PoolSpec(size=size)})


async def add_pool_lab(world: World, name: str, state: LabState = LabState.READY, **fields: object) -> None:
    fields.setdefault("profile_digest", profile_digest(world.rt.service.profiles["sandbox"]))
    await world.add_lab(name, state, expires_in=timedelta(days=3650), pool=True, owner=POOL_OWNER, **fields)


async def test_concurrent_creates_never_share_a_pool_lab(world: World) -> None:
    pooled(world, 3)
    world.rt.service.settings = world.settings.model_copy(update={"max_labs_per_user": 5})
    for i in range(3):
        await add_pool_lab(world, f"pool-{i:06d}")
    handed: list[tuple[int, str]] = []

    async def hand_over(lab_id: int, name: str) -> None:  # the real one (SSH, platform) runs in tests/engine
        handed.append((lab_id, name))
        await asyncio.sleep(0.01)

    world.rt.service.pool.hand_over = hand_over
    views = await asyncio.gather(*(world.rt.service.create(Actor(f"U_{i}"), name=f"lab{i}") for i in range(8)))
    from_pool = [v for v in views if v.state == LabState.READY]
    built = [v for v in views if v.state == LabState.REQUESTED]
    assert len(from_pool) == 3 and len(built) == 5
    assert len({v.id for v in from_pool}) == 3 and sorted(i for i, _ in handed) == sorted(v.id for v in from_pool)
    for view in from_pool:
        lab = await world.lab(view.name)
        assert not lab.pool and lab.owner == view.owner and lab.name.startswith("lab")
    assert (await world.rt.service.pool.status())[0].ready == 0


async def test_a_failed_hand_over_destroys_the_pool_lab_and_builds_instead(world: World) -> None:
    pooled(world, 1)
    await add_pool_lab(world, "pool-aaaaaa")

    async def broken(lab_id: int, name: str) -> None:
        raise ConnectionError("VM1 unreachable")

    world.rt.service.pool.hand_over = broken
    view = await world.rt.service.create(Actor("U_A"), name="mine")
    assert view.state == LabState.REQUESTED and view.name == "mine"
    assert (await world.lab("pool-aaaaaa")).state == LabState.DESTROYING


async def test_refill_builds_the_missing_and_retires_the_stale(world: World) -> None:
    await world.rt.engine.stop()  # labs stay as the refill leaves them (requested, destroying): counts are exact
    pooled(world, 3)
    await add_pool_lab(world, "pool-good01")
    await add_pool_lab(world, "pool-sick01", health=Health.DEGRADED)
    await add_pool_lab(world, "pool-fail01", LabState.FAILED, failed_step="install_zstack")
    await add_pool_lab(world, "pool-old001", profile_digest="0" * 16)
    summary = await world.rt.service.pool.refill()
    assert sorted(r.split()[0] for r in summary.retired) == ["pool-fail01", "pool-old001", "pool-sick01"]
    assert len(summary.created) == 2
    for name in ("pool-sick01", "pool-fail01", "pool-old001"):
        assert (await world.lab(name)).state == LabState.DESTROYING
    status = (await world.rt.service.pool.status())[0]
    assert (status.target, status.ready, status.building) == (3, 1, 2)
    # Within the global quota: with room for one more lab, the refill builds one and says it is short.
    world.rt.service.settings = world.settings.model_copy(update={"max_labs_total": 7})
    pooled(world, 5)
    summary = await world.rt.service.pool.refill()
    assert len(summary.created) == 1 and any("short" in line for line in summary.lines())
