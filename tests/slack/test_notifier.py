"""The Slack notifier against the fake Slack and the real service, engine and database."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.notifier import SlackNotifier
from bot.slack.pacing import SlackPacer
from services.labs.notifier import Notice, NoticeKind
from services.labs.service import Actor
from tests.fakes.slack_api import FakeSlack
from tests.slack.world import BOT_TOKEN, Sessions, World, make_world

ALICE = Actor("U_ALICE")


def text_of(blocks: list[dict]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    # Slack's limits scaled down tenfold for posts, so the tests stay fast and the pacing is still exercised.
    async with FakeSlack(bot_token=BOT_TOKEN, post_window=0.1) as server:
        yield server


FAST_POSTS = 0.12


async def wire(sessions: Sessions, fake: FakeSlack, *, min_interval: float = 0.3, pacer: SlackPacer | None = None,
               **job_options: object) -> tuple[World, SlackNotifier]:
    world = await make_world(sessions, **job_options)
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url, retry_handlers=[])
    notifier = SlackNotifier(client=client, labs=world.service, default_channel="C_LABS", min_interval=min_interval,
                             pacer=pacer or SlackPacer(post_interval=FAST_POSTS), network_backoff=(0.05, 0.05))
    world.fanout.add(notifier)
    return world, notifier


async def test_one_card_coalesced_updates_final_state_lands(sessions: Sessions, fake: FakeSlack) -> None:
    world, notifier = await wire(sessions, fake, progress_events=60)
    started = time.monotonic()
    try:
        lab = await world.service.create(ALICE, name="demo", channel="C_LABS")
        # 420 notices: generous bounds, so a loaded machine (the suite runs beside other work) is not a failure.
        await world.engine.wait_idle(lab.id, timeout=90)
        await notifier.flush(timeout=60)
    finally:
        await world.engine.stop()
    elapsed = time.monotonic() - started
    cards = fake.top_level("C_LABS")
    assert len(cards) == 1  # posted once, whatever the number of events
    card = cards[0]
    assert world.jobs.notices > 7 * 60
    assert "Lab demo" in text_of(card.blocks) and ":white_check_mark: *Ready*" in text_of(card.blocks)
    # A glance: no step list on the card (it is in the thread's build report), the state's mark once.
    assert len(card.blocks) <= 6 and ":large_green_circle:" not in text_of(card.blocks)
    assert text_of(card.blocks).count(":white_check_mark:") == 1 and "until <!date^" in text_of(card.blocks)
    updates = fake.calls_to("chat.update")
    # Bounded by time (one per 0.3 s interval here), not by the hundreds of events.
    assert 1 <= len(updates) <= elapsed / 0.3 + 1, (len(updates), elapsed)
    # And far fewer than the events (the time bound above grows when a loaded machine runs the job slowly).
    assert len(updates) < world.jobs.notices / 10
    # The card reference is stored with the lab, so another process (or a restart) updates the same card.
    assert (await world.service.status("demo")).progress_ref == f"C_LABS:{card.ts}"
    thread = fake.thread("C_LABS", card.ts)
    # The build report, then the lab's picture (a PNG shared in the thread).
    assert len(thread) == 2 and "Build report" in text_of(thread[0].blocks)
    assert [f.filename for f in fake.shared_files("C_LABS", card.ts)] == ["demo-picture.png"]
    assert thread[1].files == [fake.shared_files("C_LABS", card.ts)[0].id]
    assert not fake.rate_limited


async def test_failure_goes_to_the_thread_with_its_output(sessions: Sessions, fake: FakeSlack) -> None:
    world, notifier = await wire(sessions, fake, progress_events=2, fail_at="install_zstack")
    try:
        lab = await world.service.create(ALICE, name="broken", channel="C_LABS")
        await world.engine.wait_idle(lab.id, timeout=30)
        await notifier.flush(timeout=30)
    finally:
        await world.engine.stop()
    card = fake.top_level("C_LABS")[0]
    assert "Failed at *install zstack*: installer exited with status 3" in text_of(card.blocks)
    assert [e["action_id"] for b in card.blocks if b["type"] == "actions" for e in b["elements"]] == [
        "lab_retry", "lab_logs", "lab_destroy"]
    thread = fake.thread("C_LABS", card.ts)
    assert len(thread) == 1  # the step failure; the lab failure that follows is not repeated
    assert "no space left on device" in text_of(thread[0].blocks)


async def test_actions_are_audited_in_the_thread_and_on_the_card(sessions: Sessions, fake: FakeSlack) -> None:
    world, notifier = await wire(sessions, fake, progress_events=1)
    try:
        lab = await world.service.create(ALICE, name="audited", channel="C_LABS")
        await world.engine.wait_idle(lab.id, timeout=30)
        await world.service.extend(Actor("U_ADMIN", is_admin=True), "audited")
        await world.service.destroy(ALICE, "audited")
        await world.engine.wait_idle(lab.id, timeout=30)
        await notifier.flush(timeout=30)
    finally:
        await world.engine.stop()
    card = fake.top_level("C_LABS")[0]
    final = text_of(card.blocks)
    assert "Destroyed" in final and "Destroy requested by <@U_ALICE>" in final
    assert not [b for b in card.blocks if b["type"] == "actions"]  # no button applies to a destroyed lab
    thread = [text_of(m.blocks) for m in fake.thread("C_LABS", card.ts)]
    assert any("<@U_ADMIN> extended the lab until <!date^" in t for t in thread)
    assert not [t for t in thread if "UTC" in re.sub(r"<!date\^[^>]*>", "", t)]  # every time is a date token
    assert any("<@U_ALICE> asked to destroy the lab" in t for t in thread)
    assert len(fake.calls) <= 15


async def test_429_is_waited_out_and_the_last_update_lands(sessions: Sessions) -> None:
    # Slack allows 2 updates a second here, and the client's own pacing is turned off, so Slack says 429.
    async with FakeSlack(bot_token=BOT_TOKEN, updates_per_minute=2, update_window=1.0) as fake:
        pacer = SlackPacer(post_interval=1.1, updates_per_minute=60_000, update_burst=1000)  # real post pacing
        world, notifier = await wire(sessions, fake, min_interval=0.0, pacer=pacer, progress_events=5,
                                     step_delay=0.05)
        try:
            lab = await world.service.create(ALICE, name="limited", channel="C_LABS")
            await world.engine.wait_idle(lab.id, timeout=30)
            await notifier.flush(timeout=30)
        finally:
            await world.engine.stop()
        assert fake.rate_limited  # Slack did push back
        assert fake.violations == 0  # and every Retry-After was honoured
        card = fake.top_level("C_LABS")[0]
        assert ":white_check_mark: *Ready*" in text_of(card.blocks)


async def test_slack_down_never_reaches_the_engine(sessions: Sessions, caplog: pytest.LogCaptureFixture) -> None:
    fake = await FakeSlack(bot_token=BOT_TOKEN).start()
    url = fake.api_url
    await fake.stop()  # nothing listens there any more
    world = await make_world(sessions, progress_events=1)
    client = AsyncWebClient(token=BOT_TOKEN, base_url=url, retry_handlers=[])
    notifier = SlackNotifier(client=client, labs=world.service, default_channel="C_LABS", min_interval=0.1,
                             pacer=SlackPacer(post_interval=FAST_POSTS), network_backoff=(0.01, 0.01))
    world.fanout.add(notifier)
    try:
        lab = await world.service.create(ALICE, name="offline", channel="C_LABS")
        await world.engine.wait_idle(lab.id, timeout=30)
        await notifier.flush(timeout=30)
    finally:
        await world.engine.stop()
    assert (await world.service.status("offline")).state == "ready"
    assert "gave up sending chat.postMessage" in caplog.text
    assert BOT_TOKEN not in caplog.text


async def test_refused_post_is_logged_and_dropped(sessions: Sessions, fake: FakeSlack,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    fake.fail_next["chat.postMessage"] = "channel_not_found"
    world, notifier = await wire(sessions, fake, progress_events=1)
    try:
        lab = await world.service.create(ALICE, name="nowhere", channel="C_GONE")
        await world.engine.wait_idle(lab.id, timeout=30)
        await notifier.flush(timeout=30)
    finally:
        await world.engine.stop()
    assert "channel_not_found" in caplog.text
    assert (await world.service.status("nowhere")).state == "ready"


async def test_existing_card_is_adopted_and_a_deleted_card_reposted(sessions: Sessions, fake: FakeSlack) -> None:
    world, notifier = await wire(sessions, fake, progress_events=1)
    try:
        lab = await world.service.create(ALICE, name="adopted", channel="C_LABS")
        await world.engine.wait_idle(lab.id, timeout=30)
        await notifier.flush(timeout=30)
        first = fake.top_level("C_LABS")[0]
        # A new process (fresh notifier) picks the card up from the stored reference.
        second = SlackNotifier(client=notifier.client, labs=world.service, default_channel="C_LABS",
                               min_interval=0.1, pacer=SlackPacer(post_interval=FAST_POSTS))
        view = await world.service.status("adopted")
        await second.notify(Notice(NoticeKind.HEALTH_CHANGED, replace(view, health="degraded",
                                                                      health_failing=("iscsi",))))
        await second.flush(timeout=10)
        assert len(fake.top_level("C_LABS")) == 2  # the card and the health notice, no second card
        assert len(first.versions) >= 2
        # Someone deleted the card: the next update posts a fresh one.
        del fake.messages[("C_LABS", first.ts)]
        await second.notify(Notice(NoticeKind.EXTENDED, view, actor="U_ALICE"))
        await second.flush(timeout=10)
        assert any("Lab adopted" in text_of(m.blocks) for m in fake.top_level("C_LABS"))
        assert (await world.service.status("adopted")).progress_ref != f"C_LABS:{first.ts}"
    finally:
        await world.engine.stop()


async def test_pacer_spaces_posts_per_channel_and_meters_updates() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = SlackPacer(post_interval=1.0, updates_per_minute=60, update_burst=2, clock=lambda: now[0], sleep=sleep)
    await pacer.post_slot("C1")
    await pacer.post_slot("C2")  # another channel: no wait
    await pacer.post_slot("C1")
    assert now[0] == pytest.approx(1.0)
    for _ in range(4):
        await pacer.update_slot()
    assert now[0] == pytest.approx(3.0)  # two from the burst, then one a second
    pacer.rate_limited("chat.update", 30)
    await pacer.update_slot()
    assert now[0] >= 33.0


async def test_health_changes_reach_the_cards_channel_in_words(sessions: Sessions, fake: FakeSlack) -> None:
    world, notifier = await wire(sessions, fake, progress_events=1)
    try:
        lab = await world.service.create(ALICE, name="sick", channel="C_COURSE")
        await world.engine.wait_idle(lab.id, timeout=30)
        await notifier.flush(timeout=30)
        view = await world.service.status("sick")
        degraded = replace(view, health="degraded", health_failing=("iscsi_lun", "ssh_vm2"))
        await notifier.notify(Notice(NoticeKind.HEALTH_CHANGED, degraded, text="degraded: iscsi_lun, ssh_vm2"))
        await notifier.notify(Notice(NoticeKind.HEALTH_CHANGED, replace(view, health="ok"), text="recovered"))
        await notifier.flush(timeout=30)
    finally:
        await world.engine.stop()
    notices = [m for m in fake.top_level("C_COURSE") if "health" in m.text]
    assert [m.text for m in notices] == ["Lab sick health: degraded", "Lab sick health: ok"]
    first = text_of(notices[0].blocks)
    assert "VM1's disk visible on VM2 over iSCSI" in first and "SSH to VM2 through VM1" in first
    assert "iscsi_lun" not in first and "<@U_ALICE>" in first
    assert [e["action_id"] for b in notices[0].blocks if b["type"] == "actions" for e in b["elements"]] == [
        "lab_health", "lab_logs"]
    assert "healthy again" in text_of(notices[1].blocks)
    assert not fake.top_level("C_LABS")  # not the labs channel: the lab's own


async def test_orphan_reports_go_to_the_labs_channel_with_date_tokens(sessions: Sessions, fake: FakeSlack) -> None:
    from services.db import utcnow
    from services.labs.notifier import OrphanReport

    world, notifier = await wire(sessions, fake, progress_events=1)
    try:
        details = {"labbot-old-vm1 (VM)": "3f2a; tagged for a destroyed lab; first seen 2026-11-25 10:00 UTC; "
                                          "deleted from 2026-11-25 12:00 UTC on"}
        await notifier.report_orphans(OrphanReport(text="1 resource(s) on the lab platform that no live lab owns",
                                                   resources=details, channel="C_LABS", at=utcnow()))
        await notifier.flush(timeout=30)
    finally:
        await world.engine.stop()
    [report] = fake.top_level("C_LABS")
    text = text_of(report.blocks)
    assert "Orphaned resources" in text and "labbot-old-vm1" in text
    assert text.count("<!date^") == 2 and "10:00 UTC>" in text  # tokens, with the UTC time as their fallback
    assert "first seen 2026" not in text
