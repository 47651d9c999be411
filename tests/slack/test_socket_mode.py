"""Socket Mode start-up against a local WebSocket server standing in for Slack's (the fake Slack's /link)."""

from __future__ import annotations

import asyncio
import json

import httpx

from bot.app import SlackBot
from bot.slack.pacing import SlackPacer
from bot.slack.runners import make_server, serve_socket_mode
from tests.fakes.slack_api import FakeSlack
from tests.slack.world import APP_TOKEN, BOT_TOKEN, Sessions, WorldDomain, make_world, settings


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
