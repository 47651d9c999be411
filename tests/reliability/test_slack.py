"""Slack faults, beyond what tests/slack covers (one lab's 429s waited out, a sequential retried delivery, Slack
down): a 429 storm over several labs building at once, answers lost after Slack acted, slow answers, and the
same command delivered several times at once. The real Slack front end runs behind real HTTP; the network to
the fake Slack is tests/reliability/slack_proxy.py. At the end: one lab per command, one card per lab, and every
card shows the lab's final state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from tests.reliability.slack_proxy import SlackProxy
from tests.slack.harness import Harness, running_bot
from tests.slack.world import Sessions, settings


@pytest.fixture
async def proxy() -> AsyncIterator[SlackProxy]:
    async with SlackProxy("http://127.0.0.1:9/api/") as server:  # upstream set once the fake Slack listens
        yield server


def _cards_by_lab(h: Harness, names: list[str]) -> dict[str, list[str]]:
    """The top-level messages in the labs channel that are a given lab's card (by its name in the blocks)."""
    cards: dict[str, list[str]] = {name: [] for name in names}
    for message in h.fake.top_level("C_LABS"):
        text = json.dumps(message.blocks, ensure_ascii=False)
        for name in names:
            if f"`{name}`" in text or f"*{name}*" in text or f" {name} " in text:
                cards[name].append(text)
                break
    return cards


async def _final_cards_ok(h: Harness, names: list[str], word: str) -> None:
    labs = {lab.name: lab for lab in await h.world.service.list_labs(h.bot.deps.actor("U_ALICE"), everything=True)}
    assert sorted(labs) == sorted(names), f"labs made: {sorted(labs)}"
    cards = _cards_by_lab(h, names)
    assert {n: len(c) for n, c in cards.items()} == dict.fromkeys(names, 1), "one card per lab"
    stale = [n for n, c in cards.items() if word not in c[0]]
    assert stale == [], f"cards not showing {word!r}: {stale}"


async def test_429_storm_over_many_labs_loses_no_final_card_state(sessions: Sessions, proxy: SlackProxy) -> None:
    names = [f"storm{i}" for i in range(5)]
    async with running_bot(sessions, settings_=settings(slack_api_url=proxy.api_url, max_labs_per_user=10),
                           progress_events=5, step_delay=0.05) as h:
        proxy.upstream = h.fake.api_url.rstrip("/")
        proxy.faults.storm(4.0)  # every card post and update is refused for 4 s, while the labs build
        answers = await asyncio.gather(*(h.command(f"create {n} --ttl 1h", trigger_id=f"5{i}.1.a", hook=n)
                                         for i, n in enumerate(names)))
        assert [a.status_code for a in answers] == [200] * len(names)
        await h.settle(timeout=90)
        await h.bot.notifier.flush(timeout=60)
        assert proxy.faults.storm_answers > 0
        await _final_cards_ok(h, names, "Ready")
        assert h.fake.violations == 0  # labbot never hammered through a Retry-After
        assert not h.fake.ephemerals or all("ratelimited" not in json.dumps(e) for e in h.fake.ephemerals)


async def test_lost_and_slow_answers_keep_one_card_with_the_final_state(sessions: Sessions, proxy: SlackProxy) -> None:
    async with running_bot(sessions, settings_=settings(slack_api_url=proxy.api_url), progress_events=5,
                           step_delay=0.05) as h:
        proxy.upstream = h.fake.api_url.rstrip("/")
        proxy.faults.lose["chat.update"] = 3  # the update reached Slack, its answer did not reach labbot
        proxy.faults.delay["chat.update"] = 0.3
        await h.command("create slow --ttl 1h", trigger_id="61.1.a")
        await h.settle(timeout=60)
        await h.bot.notifier.flush(timeout=60)
        assert proxy.faults.lost == 3
        await _final_cards_ok(h, ["slow"], "Ready")


async def test_lost_card_post_answer_does_not_post_a_second_card(sessions: Sessions, proxy: SlackProxy) -> None:
    async with running_bot(sessions, settings_=settings(slack_api_url=proxy.api_url), progress_events=2) as h:
        proxy.upstream = h.fake.api_url.rstrip("/")
        proxy.faults.lose["chat.postMessage"] = 1  # the first post is the card
        await h.command("create lost --ttl 1h", trigger_id="62.1.a")
        await h.settle(timeout=60)
        await h.bot.notifier.flush(timeout=60)
        assert proxy.faults.lost == 1
        await _final_cards_ok(h, ["lost"], "Ready")


async def test_the_same_command_delivered_at_once_makes_one_lab(sessions: Sessions, proxy: SlackProxy) -> None:
    async with running_bot(sessions, settings_=settings(slack_api_url=proxy.api_url), progress_events=2) as h:
        proxy.upstream = h.fake.api_url.rstrip("/")
        # Slack's retries (X-Slack-Retry-Num 1-3) and a duplicate delivery, all in flight together.
        deliveries = [h.command("create twice --ttl 1h", trigger_id="63.1.a", retry=r) for r in (None, 1, 2, 3)]
        deliveries.append(h.command("create twice --ttl 1h", trigger_id="63.1.a"))
        answers = await asyncio.gather(*deliveries)
        assert all(a.status_code == 200 for a in answers), [a.status_code for a in answers]
        await h.settle(timeout=60)
        await h.bot.notifier.flush(timeout=60)
        await _final_cards_ok(h, ["twice"], "Ready")
        errors = [b for b in h.fake.hook_bodies() if "already" in json.dumps(b) and "twice" in json.dumps(b)]
        assert len(errors) <= 1, errors  # at most the plain duplicate is told the lab exists
