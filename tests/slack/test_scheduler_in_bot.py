"""The scheduler inside the Slack bot: started with it, its notices on Slack, a lab past expiry destroyed.

The bot runs over real HTTP against the fake Slack, on the real service, engine and database (scripted build and
destroy jobs); the scheduler is the real ``Scheduler`` running the real expiry sweep, on a short interval.
``tests/slack/test_real_pipeline.py`` covers the production wiring (``run_bot`` → ``Scheduler.for_runtime``).
"""

from __future__ import annotations

import json
from datetime import timedelta

from services.db import utcnow
from services.labs import repository as repo
from services.labs.build.health import HealthReport
from services.scheduler.context import SweepContext
from services.scheduler.expiry import expiry_sweep
from services.scheduler.leader import ScheduledJob, Scheduler
from tests.slack.harness import running_bot
from tests.slack.world import PROFILES, Sessions, World


class NoPlatform:
    """The expiry sweep never reaches the lab platform or the health checks; anything that does fails the test."""

    async def __call__(self, *args: object, **kwargs: object) -> HealthReport:
        raise AssertionError("the expiry sweep must not run health checks")

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the expiry sweep must not call the lab platform ({name})")


def expiry_scheduler(world: World) -> Scheduler:
    no = NoPlatform()
    ctx = SweepContext(sessions=world.service.sessions, settings=world.settings, profiles=PROFILES,
                       notifier=world.fanout, health=no, announce_health=no, platform=no,  # type: ignore[arg-type]
                       kick=world.engine.kick)
    job = ScheduledJob("expiry", timedelta(seconds=0.3), lambda: expiry_sweep(ctx))
    return Scheduler([job], database_url=world.settings.database_url, name="bot-test", check_seconds=0.3)


def is_warning(message) -> bool:
    """An expiry warning, as posted or as retired later (it keeps its block id)."""
    return any(b.get("block_id") == "lab_expiry_warning" for b in message.blocks)


def said(messages: list) -> str:
    return " ".join(m.text + json.dumps(m.blocks, ensure_ascii=False) for m in messages)


async def test_a_running_bot_warns_then_destroys_an_expired_lab(sessions: Sessions, database_url: str) -> None:
    overrides = {"database_url": database_url, "expiry_warning_offsets": ["30m"]}
    async with running_bot(sessions, overrides=overrides, progress_events=1, scheduler=expiry_scheduler) as h:
        assert h.bot.scheduler is not None and h.bot.scheduler.status()["running"]
        assert (await h.http.get("/healthz")).json()["scheduler"]["running"] is True
        await h.command("create old --ttl 2h")
        await h.settle()
        lab = await h.world.service.status("old")
        assert lab.state == "ready"
        card = h.fake.top_level("C_LABS")[0]

        async def expire_in(delta: timedelta) -> None:
            async with sessions() as session, session.begin():
                row = await repo.get(session=session, lab_id=lab.id)
                row.expires_at = utcnow() + delta
                await repo.save(session=session)

        await expire_in(timedelta(minutes=10))
        await h.fake.wait_until(lambda: "expires <!date^" in said(h.fake.top_level("C_LABS")[1:]), timeout=10)
        assert (await h.world.service.status("old")).state == "expiring"
        await expire_in(-timedelta(seconds=1))
        await h.fake.wait_until(lambda: "expired <!date^" in said(h.fake.top_level("C_LABS")[1:]), timeout=10)
        await h.settle()
        assert (await h.world.service.status("old")).state == "destroyed"
        assert h.world.jobs.destroys == [lab.id]  # destroyed once, although the sweep kept running
        assert ":wastebasket: *Destroyed*" in said([card])
        assert "because it expired" in said(h.fake.thread("C_LABS", card.ts))
        channel = h.fake.top_level("C_LABS")
        warnings = [m for m in channel if is_warning(m)]
        assert len(warnings) == 1 and len([m for m in channel if "expired <!date^" in said([m])]) == 1
        # The warning's Extend menu is gone: the lab was destroyed instead.
        assert not [b for b in warnings[0].blocks if b["type"] == "actions"] and "was destroyed" in said(warnings)
        # The owner got the warning privately too, retired the same way.
        private = [m for m in h.fake.top_level("D_ALICE") if is_warning(m)]
        assert len(private) == 1 and not [b for b in private[0].blocks if b["type"] == "actions"]
        scheduler = h.bot.scheduler
    assert scheduler.status()["leader"] is False  # stopped with the bot


async def test_extending_from_the_warning_keeps_the_lab(sessions: Sessions, database_url: str) -> None:
    overrides = {"database_url": database_url, "expiry_warning_offsets": ["30m"]}
    async with running_bot(sessions, overrides=overrides, progress_events=1, scheduler=expiry_scheduler) as h:
        await h.command("create keep --ttl 2h")
        await h.settle()
        lab = await h.world.service.status("keep")
        async with sessions() as session, session.begin():
            row = await repo.get(session=session, lab_id=lab.id)
            row.expires_at = utcnow() + timedelta(minutes=5)
            await repo.save(session=session)
        await h.fake.wait_until(lambda: "expires <!date^" in said(h.fake.top_level("C_LABS")[1:]), timeout=10)
        await h.command("extend keep 2h")
        await h.settle()
        extended = await h.world.service.status("keep")
        assert extended.state == "ready" and extended.expires_at > utcnow() + timedelta(hours=1)
        assert h.world.jobs.destroys == []
        # Every copy of the warning (channel, owner's DM) now says it was extended, and offers no menu any more.
        warnings = [m for m in [*h.fake.top_level("C_LABS"), *h.fake.top_level("D_ALICE")] if is_warning(m)]
        assert len(warnings) == 2
        for warning in warnings:
            assert not [b for b in warning.blocks if b["type"] == "actions"]
            assert "extended by <@U_ALICE>" in said([warning]) and "runs until <!date^" in said([warning])


async def test_a_failed_labs_warning_offers_destroy(sessions: Sessions, database_url: str) -> None:
    overrides = {"database_url": database_url, "expiry_warning_offsets": ["30m"]}
    async with running_bot(sessions, overrides=overrides, progress_events=1, scheduler=expiry_scheduler,
                           fail_at="install_zstack") as h:
        await h.command("create broken --ttl 2h")
        await h.settle()
        lab = await h.world.service.status("broken")
        assert lab.state == "failed"
        async with sessions() as session, session.begin():
            row = await repo.get(session=session, lab_id=lab.id)
            row.expires_at = utcnow() + timedelta(minutes=5)
            await repo.save(session=session)
        await h.fake.wait_until(lambda: any("expires soon" in m.text for m in h.fake.top_level("C_LABS")), timeout=10)
        warning = next(m for m in h.fake.top_level("C_LABS") if "expires soon" in m.text)
        buttons = [e["action_id"] for b in warning.blocks if b["type"] == "actions" for e in b["elements"]]
        assert buttons == ["lab_retry", "lab_destroy"]
