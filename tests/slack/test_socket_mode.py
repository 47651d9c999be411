"""Socket Mode end to end against a local WebSocket server standing in for Slack's (the fake Slack's /link):
start-up, a slash command, a card button click, the create form's submission and an App Home event, each
delivered in Slack's envelope and acked over the socket."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import unquote

import httpx

from bot.app import SlackBot
from bot.blocks.ids import CreateField, CreateModalMeta, ExtendChoice, LabAction, encode
from bot.slack.pacing import SlackPacer
from bot.slack.runners import make_server, serve_socket_mode
from tests.fakes.slack_api import FakeSlack
from tests.slack import payloads
from tests.slack.world import APP_TOKEN, BOT_TOKEN, Sessions, WorldDomain, make_world, settings


def thread_text(fake: FakeSlack, ts: str) -> str:
    return json.dumps([m.blocks for m in fake.thread("C_LABS", ts)])


async def test_socket_mode_connects_and_handles_commands(sessions: Sessions) -> None:
    async with FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN, post_window=0.1) as fake:
        cfg = settings(slack_api_url=fake.api_url, slack_app_token=APP_TOKEN, slack_signing_secret=None)
        world = await make_world(sessions, settings_=cfg, start=False, progress_events=1)
        bot = SlackBot(cfg, WorldDomain(world, sessions), card_interval=0.2, pacer=SlackPacer(post_interval=0.12))
        await bot.start()
        server = make_server(bot, "127.0.0.1", 0, slack_events=False)
        stop = asyncio.Event()
        running = asyncio.create_task(serve_socket_mode(bot, server, stop))
        try:
            await asyncio.wait_for(fake.socket_connected.wait(), 10)
            assert fake.calls_to("apps.connections.open")  # the URL came from Slack's API, with the app token
            payload = {"token": "x", "team_id": "T111", "channel_id": "C_LABS", "user_id": "U_ALICE",
                       "command": "/lab", "text": "help", "api_app_id": "A111", "trigger_id": "1.2.3",
                       "response_url": fake.hook_url("sock")}
            ack = await fake.socket_send({"envelope_id": "env-1", "type": "slash_commands", "payload": payload,
                                          "accepts_response_payload": True})
            assert "/lab create" in json.dumps(ack["payload"])
            create = dict(payload, text="create sock", trigger_id="1.2.4")
            await fake.socket_send({"envelope_id": "env-2", "type": "slash_commands", "payload": create,
                                    "accepts_response_payload": True})
            await fake.wait_until(lambda: any("Lab sock" in json.dumps(m.blocks) and "Ready" in json.dumps(m.blocks)
                                              for m in fake.top_level("C_LABS")), timeout=20)
            # A click on the card's Extend menu, delivered over the socket as Slack does ("interactive").
            lab = await world.service.status("sock")
            card_ts = lab.progress_ref.split(":")[1]
            choice = encode(ExtendChoice(lab_id=lab.id, name="sock", duration="1h"))
            click = json.loads(unquote(payloads.block_action(
                LabAction.EXTEND, selected=choice, message_ts=card_ts,
                response_url=fake.hook_url("sock-click")).removeprefix("payload=")))
            ack = await fake.socket_send({"envelope_id": "env-3", "type": "interactive", "payload": click,
                                          "accepts_response_payload": False})
            assert ack == {"envelope_id": "env-3"}  # acked at once, with nothing for Slack to show
            await fake.wait_until(lambda: "extended by <@U_ALICE>" in thread_text(fake, card_ts)
                                  or "Extended by <@U_ALICE>" in json.dumps(fake.messages[("C_LABS", card_ts)].blocks),
                                  timeout=10)
            assert (await world.service.status("sock")).ttl_extensions == 1
            # The create form, submitted over the socket from a private channel labbot is not in: the lab is
            # announced in the labs channel and the person is told where, by DM (no response_url after a modal).
            fake.conversation("C_SECRET", kind="private", member=False)
            values = {CreateField.NAME: {CreateField.NAME: {"type": "plain_text_input", "value": "sock-form"}},
                      CreateField.PROFILE: {CreateField.PROFILE: {"type": "static_select",
                                                                  "selected_option": {"value": "sandbox"}}},
                      CreateField.TTL: {CreateField.TTL: {"type": "static_select",
                                                          "selected_option": {"value": "4h"}}}}
            submission = json.loads(unquote(payloads.view_submission(
                values, private_metadata=encode(CreateModalMeta(channel_id="C_SECRET"))).removeprefix("payload=")))
            ack = await fake.socket_send({"envelope_id": "env-4", "type": "interactive", "payload": submission,
                                          "accepts_response_payload": True})
            assert ack["envelope_id"] == "env-4" and not ack.get("payload")  # valid: the modal just closes
            await fake.wait_until(lambda: any("sock-form" in m.text and "Ready" in json.dumps(m.blocks)
                                              for m in fake.top_level("C_LABS")), timeout=20)
            await fake.wait_until(lambda: "Its card is in <#C_LABS>" in json.dumps(
                [m.blocks for m in fake.top_level("D_ALICE")]), timeout=10)
            # App Home over the socket (events_api): published for the person who opened it.
            event = json.loads(payloads.app_home_opened("U_ALICE"))
            ack = await fake.socket_send({"envelope_id": "env-5", "type": "events_api", "payload": event,
                                          "accepts_response_payload": False})
            await fake.wait_until(lambda: "sock-form" in json.dumps(fake.home.get("U_ALICE", {})), timeout=10)
            while not server.started:
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                assert (await http.get("/healthz")).status_code == 200
                assert (await http.post("/slack/events", content="{}")).status_code in (404, 405)
        finally:
            stop.set()
            await running
            await bot.stop()
