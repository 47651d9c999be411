"""Where labbot's messages go, against a fake Slack that answers as Slack does for conversations labbot is not in
(``channel_not_found`` for private channels and other people's DMs, ``not_in_channel`` where Slack says so).

Every card lands where someone reads it, or the create is refused before a lab exists; the owner hears about
ready, failed and the expiry warning privately too; a refusal after the create form closed still reaches them.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
import yaml
from slack_bolt.listener.async_listener_error_handler import AsyncCustomListenerErrorHandler
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.ids import CreateField, CreateModalMeta, ExtendChoice, LabAction, LabRef, encode
from bot.slack.errors import handle_app_error
from bot.slack.notifier import SlackNotifier
from bot.slack.pacing import SlackPacer
from services.errors import CommandError
from services.labs.notifier import Notice, NoticeKind
from services.labs.service import Actor
from tests.fakes.slack_api import FakeSlack
from tests.slack import payloads
from tests.slack.harness import running_bot
from tests.slack.world import BOT_TOKEN, Sessions, make_world

ALICE = Actor("U_ALICE")
MANIFEST = yaml.safe_load((Path(__file__).resolve().parents[2] / "bot" / "slack" / "manifest.yaml").read_text())
MANIFEST_SCOPES = frozenset(MANIFEST["oauth_config"]["scopes"]["bot"])


def text_of(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def refused(fake: FakeSlack, method: str) -> list[str]:
    return [c.error or "" for c in fake.calls_to(method) if not c.ok]


def form_values(name: str) -> dict:
    return {
        CreateField.NAME: {CreateField.NAME: {"type": "plain_text_input", "value": name}},
        CreateField.PROFILE: {CreateField.PROFILE: {"type": "static_select", "selected_option": {"value": "sandbox"}}},
        CreateField.TTL: {CreateField.TTL: {"type": "static_select", "selected_option": {"value": "4h"}}},
    }


async def raw_call(fake: FakeSlack, method: str, args: dict) -> dict:
    """One Web API call as JSON, answered as is (slack_sdk would raise on ok=false)."""
    async with aiohttp.ClientSession() as http, http.post(
            fake.api_url + method, json=args, headers={"Authorization": f"Bearer {BOT_TOKEN}"}) as answer:
        return await answer.json()


@pytest.mark.parametrize(
    ("channel", "method", "args", "error"),
    [
        ("C_PRIVATE", "chat.postMessage", {"text": "x"}, "channel_not_found"),
        ("C_PRIVATE", "conversations.info", {}, "channel_not_found"),
        ("C_PRIVATE", "conversations.history", {}, "channel_not_found"),
        ("C_PRIVATE", "chat.postEphemeral", {"user": "U_ALICE", "text": "x"}, "channel_not_found"),
        ("D_SOMEONE_ELSE", "chat.postMessage", {"text": "x"}, "channel_not_found"),
        ("C_OPEN", "conversations.history", {}, "not_in_channel"),
        ("C_OPEN", "chat.postMessage", {"text": "x"}, "not_in_channel"),  # without chat:write.public
        ("C_OPEN", "chat.postEphemeral", {"user": "U_ALICE", "text": "x"}, "not_in_channel"),
        ("C_ARCHIVED", "chat.postMessage", {"text": "x"}, "is_archived"),
        ("D_ALICE", "conversations.history", {}, "missing_scope"),  # the scope is left out below
    ],
)
async def test_the_fake_refuses_like_slack(channel: str, method: str, args: dict, error: str) -> None:
    async with FakeSlack(bot_token=BOT_TOKEN, scopes=MANIFEST_SCOPES - {"chat:write.public", "im:history"}) as fake:
        fake.conversation("C_PRIVATE", kind="private", member=False)
        fake.conversation("C_OPEN", kind="public", member=False)
        fake.conversation("C_ARCHIVED", archived=True)
        fake.app_dm("U_ALICE")
        body = await raw_call(fake, method, dict(args, channel=channel))
        assert body == {"ok": False, "error": error, **({"needed": "im:history"} if error == "missing_scope" else {})}


async def test_the_fake_lets_labbot_post_where_slack_does() -> None:
    async with FakeSlack(bot_token=BOT_TOKEN, scopes=MANIFEST_SCOPES) as fake:
        fake.conversation("C_OPEN", kind="public", member=False)
        fake.conversation("C_INVITED", kind="private", member=True)
        dm = fake.app_dm("U_ALICE")
        for channel in ("C_OPEN", "C_INVITED", dm, "U_ALICE"):
            assert (await raw_call(fake, "chat.postMessage", {"channel": channel, "text": "x"}))["ok"], channel
        info = await raw_call(fake, "conversations.info", {"channel": "C_OPEN"})
        assert info["channel"]["is_member"] is False and info["channel"]["is_private"] is False
        assert (await raw_call(fake, "conversations.info", {"channel": dm}))["channel"]["is_im"] is True


async def test_a_lab_from_a_private_channel_labbot_is_not_in_is_announced_in_the_labs_channel(
        sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1,
                           fake_options={"post_window": 0.1, "scopes": MANIFEST_SCOPES}) as h:
        h.fake.conversation("C_SECRET", kind="private", member=False)
        await h.command("create hidden", channel="C_SECRET", hook="secret")
        await h.settle()
        lab = await h.world.service.status("hidden")
        assert lab.channel == "C_LABS" and lab.state == "ready"
        cards = [m for m in h.fake.top_level("C_LABS") if "hidden" in text_of(m.blocks)]
        assert len(cards) == 1 and lab.progress_ref == f"C_LABS:{cards[0].ts}"
        assert "Its card is in <#C_LABS>" in text_of(h.fake.hook_bodies("secret"))
        # The owner hears that it is ready, privately, in their DM with the app.
        dm = h.fake.top_level("D_ALICE")
        assert any("is ready" in text_of(m.blocks) for m in dm), [m.text for m in dm]
        assert not refused(h.fake, "chat.postMessage")  # no message was lost on the way
        assert not [c for c in h.fake.calls if c.error == "missing_scope"]  # the manifest's scopes suffice


async def test_a_lab_nobody_could_see_is_refused_before_it_exists(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1, overrides={"channel": None}) as h:
        h.fake.conversation("C_SECRET", kind="private", member=False)
        await h.command("create hidden", channel="C_SECRET", hook="secret")
        await h.settle()
        answer = text_of(h.fake.hook_bodies("secret"))
        assert "/invite @labbot" in answer and "nothing was created" in answer
        assert await h.world.service.list_labs(ALICE, everything=True) == []
        assert not h.fake.calls_to("chat.postMessage")


async def test_a_lab_from_the_app_dm_keeps_its_card_there(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1,
                           fake_options={"post_window": 0.1, "scopes": MANIFEST_SCOPES}) as h:
        dm = h.fake.app_dm("U_ALICE")
        await h.command("create mine", channel=dm)
        await h.settle()
        lab = await h.world.service.status("mine")
        assert lab.channel == dm and lab.progress_ref.startswith(f"{dm}:")
        dm_messages = h.fake.top_level(dm)
        assert len(dm_messages) == 1  # the card; no second "ready" note next to it
        assert not h.fake.top_level("C_LABS") and not refused(h.fake, "chat.postMessage")


async def test_a_public_channel_labbot_was_not_invited_to_gets_the_card(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1) as h:
        h.fake.conversation("C_COURSE", kind="public", member=False)
        await h.command("create course", channel="C_COURSE")
        await h.settle()
        assert (await h.world.service.status("course")).channel == "C_COURSE"
        assert [m for m in h.fake.top_level("C_COURSE") if "course" in text_of(m.blocks)]


async def test_an_old_lab_whose_channel_labbot_cannot_reach_moves_to_the_labs_channel(sessions: Sessions) -> None:
    async with FakeSlack(bot_token=BOT_TOKEN, post_window=0.1) as fake:
        fake.conversation("C_GONE", kind="private", member=False)
        world = await make_world(sessions, progress_events=1, fail_at="install_zstack")
        client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url, retry_handlers=[])
        notifier = SlackNotifier(client=client, labs=world.service, default_channel="C_LABS", min_interval=0.2,
                                 pacer=SlackPacer(post_interval=0.12))
        world.fanout.add(notifier)
        try:
            # Registered directly, as a lab created before labbot checked where its card could go.
            lab = await world.service.create(ALICE, name="stranded", channel="C_GONE")
            await world.engine.wait_idle(lab.id, timeout=30)
            await notifier.flush(timeout=30)
            view = await world.service.status("stranded")
            await notifier.notify(Notice(NoticeKind.EXPIRY_WARNING, view, actor="labbot"))
            await notifier.flush(timeout=30)
        finally:
            await world.engine.stop()
        card = next(m for m in fake.top_level("C_LABS") if "stranded" in m.text)
        assert (await world.service.status("stranded")).progress_ref == f"C_LABS:{card.ts}"
        assert "no space left on device" in text_of([m.blocks for m in fake.thread("C_LABS", card.ts)])
        assert any("expires" in m.text for m in fake.top_level("C_LABS"))  # the warning followed the card
        # And the owner got the failure and the warning privately.
        private = text_of([m.blocks for m in fake.top_level("D_ALICE")])
        assert "failed at step `install_zstack`" in private and "is destroyed <!date^" in private


async def test_a_refusal_after_the_form_closed_reaches_the_person_by_dm(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1) as h:
        h.fake.conversation("C_SECRET", kind="private", member=False)
        await h.command("create taken")
        await h.settle()
        meta = encode(CreateModalMeta(channel_id="C_SECRET"))
        await h.send(payloads.view_submission(form_values("taken"), private_metadata=meta), payloads.FORM)
        await h.settle()
        assert "channel_not_found" in refused(h.fake, "chat.postEphemeral")  # where Slack would not take it
        private = text_of([m.blocks for m in h.fake.top_level("D_ALICE")])
        assert "taken" in private and "already" in private


async def test_an_error_after_a_click_was_acknowledged_is_reported_without_a_traceback(sessions: Sessions) -> None:
    # Bolt hands the error handler no response once the listener has acked; returning one raised an
    # AssertionError in Bolt's task (logged as a traceback, the user's answer unaffected).
    async with running_bot(sessions, progress_events=1) as h:
        await h.command("create clicked")
        await h.settle()
        lab = await h.world.service.status("clicked")
        forged = encode(ExtendChoice(lab_id=lab.id, name="clicked", duration="1h")).replace("1h", "1y")
        await h.send(payloads.block_action(LabAction.EXTEND, selected=forged, response_url=h.fake.hook_url("x")),
                     payloads.FORM)
        await h.fake.wait_until(lambda: bool(h.fake.hook_bodies("x")))
        assert "out of date" in text_of(h.fake.hook_bodies("x"))
    body = {"type": "block_actions", "user": {"id": "U_ALICE"}, "container": {}}
    handler = AsyncCustomListenerErrorHandler(logger=__import__("logging").getLogger("test"), func=handle_app_error)
    request = AsyncBoltRequest(body=json.dumps(body), mode="socket_mode")
    await handler.handle(error=CommandError("late"), request=request, response=None)  # must not raise
    shaped = BoltResponse(status=500)
    await handler.handle(error=CommandError("early"), request=request, response=shaped)
    assert shaped.status == 200  # before the ack, the error still becomes a quiet 200


async def test_owner_hears_of_a_failure_privately(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1, fail_at="install_zstack") as h:
        await h.command("create broken")
        await h.settle()
        private = [m for m in h.fake.top_level("D_ALICE") if "broken" in m.text]
        assert len(private) == 1 and "failed" in private[0].text
        buttons = [e["action_id"] for b in private[0].blocks if b["type"] == "actions" for e in b["elements"]]
        assert buttons == [LabAction.RETRY, LabAction.LOGS, LabAction.DESTROY]
        ref = next(e["value"] for b in private[0].blocks if b["type"] == "actions" for e in b["elements"])
        assert LabRef.model_validate_json(ref) == LabRef(lab_id=(await h.world.service.status("broken")).id,
                                                         name="broken")


def test_manifest_scopes_cover_every_conversation_kind_a_card_can_live_in() -> None:
    kinds = {"public": "channels", "private": "groups", "im": "im", "mpim": "mpim"}
    for prefix in kinds.values():
        assert {f"{prefix}:read", f"{prefix}:history"} <= MANIFEST_SCOPES
    assert "im:write" not in MANIFEST_SCOPES  # DMs are posted to the user's id; conversations.open is not used


