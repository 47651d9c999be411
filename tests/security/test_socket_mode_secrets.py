"""``labbot run`` in Socket Mode (its own ``run_bot``), logging at DEBUG: the app token, the bot token and the
secret key appear nowhere in the logs, in what reached Slack (apart from the Authorization header Slack needs),
or on /metrics and /healthz."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket

import httpx
from pydantic import SecretStr

from bot.slack.runners import run_bot
from config.settings import Settings
from tests.fakes.slack_api import FakeSlack
from tests.security.scan import find_secrets
from tests.slack.test_real_pipeline import recording_logs

APP_TOKEN = f"xapp-1-A111-{secrets.token_hex(8)}-{secrets.token_hex(16)}"
BOT_TOKEN = f"xoxb-{secrets.token_hex(6)}-{secrets.token_hex(12)}"
SECRET_KEY = "k-" + secrets.token_urlsafe(32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_socket_mode_keeps_its_tokens_to_itself(database_url: str) -> None:
    port = free_port()
    with recording_logs() as logs:
        async with FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN, post_window=0.1) as fake:
            settings = Settings(database_url=database_url, slack_bot_token=SecretStr(BOT_TOKEN),
                                slack_app_token=SecretStr(APP_TOKEN), slack_api_url=fake.api_url,
                                secret_key=SecretStr(SECRET_KEY), channel="C_LABS", default_profile="sandbox",
                                scheduler_enabled=False)
            stop = asyncio.Event()
            task = asyncio.create_task(run_bot(settings, host="127.0.0.1", port=port, stop=stop,
                                               handle_signals=False))
            try:
                await asyncio.wait_for(fake.socket_connected.wait(), 20)
                payload = {"token": "x", "team_id": "T111", "channel_id": "C_LABS", "user_id": "U_ALICE",
                           "command": "/lab", "text": "list --all", "api_app_id": "A111", "trigger_id": "1.2.3",
                           "response_url": fake.hook_url("sock")}
                await fake.socket_send({"envelope_id": "env-1", "type": "slash_commands", "payload": payload,
                                        "accepts_response_payload": True})
                await fake.wait_until(lambda: bool(fake.hook_bodies("sock")), timeout=15)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                    pages = [(await http.get("/metrics")).text, (await http.get("/healthz")).text]
            finally:
                stop.set()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(task, 30)
    assert fake.calls_to("apps.connections.open") and pages[0]
    assert len(logs.lines) > 20
    sources: dict[str, list[str] | list[bytes]] = {"logs": logs.lines, "Slack requests": [b for _, _, b in fake.raw],
               "Slack request headers": [json.dumps(h) for _, h, _ in fake.raw],
               "socket acks": [json.dumps(a) for a in fake.socket_acks.values()], "metrics and healthz": pages}
    assert find_secrets({"app token": APP_TOKEN, "bot token": BOT_TOKEN, "secret key": SECRET_KEY}, sources) == []
