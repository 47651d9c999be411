"""The real Slack front end behind real HTTP on loopback, talking to the fake Slack, on the real domain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from bot.app import SchedulerControl, SlackBot
from bot.slack.pacing import SlackPacer
from bot.slack.runners import make_server
from config.settings import Settings
from tests.fakes.slack_api import FakeSlack
from tests.slack import payloads
from tests.slack.world import BOT_TOKEN, Sessions, World, WorldDomain, make_world, settings


@dataclass
class Harness:
    """Everything a test needs: the fake Slack, the domain, the bot, and an HTTP client for /slack/events."""

    fake: FakeSlack
    world: World
    bot: SlackBot
    http: httpx.AsyncClient

    async def send(self, body: str, content_type: str, **sign: Any) -> httpx.Response:
        """POST a signed body to /slack/events."""
        return await self.http.post("/slack/events", content=body,
                                    headers=payloads.sign(body, content_type=content_type, **sign))

    async def command(self, text: str, *, user: str = "U_ALICE", channel: str = "C_LABS",
                      hook: str = "cmd", trigger_id: str | None = None, **sign: Any) -> httpx.Response:
        """Type ``/lab <text>``."""
        body = payloads.slash_command(text, response_url=self.fake.hook_url(hook), user=user, channel=channel,
                                      trigger_id=trigger_id)
        return await self.send(body, payloads.FORM, **sign)

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait for background work: handlers' tasks, the engine, then the Slack notifier."""
        await self.bot.deps.background.drain(timeout)
        await self.world.engine.wait_idle(timeout=timeout)
        await self.bot.deps.background.drain(timeout)
        await self.bot.notifier.flush(timeout)


@asynccontextmanager
async def running_bot(sessions: Sessions, *, fake_options: dict[str, Any] | None = None,
                      settings_: Settings | None = None, pacer: SlackPacer | None = None,
                      card_interval: float = 0.3, overrides: dict[str, Any] | None = None,
                      scheduler: Callable[[World], SchedulerControl] | None = None,
                      **job_options: Any) -> AsyncIterator[Harness]:
    """Start the fake Slack, the domain, the bot and its HTTP server on 127.0.0.1; stop them all afterwards.

    ``overrides`` change the default test settings; ``scheduler`` builds the scheduler the bot starts and stops
    (none by default)."""
    async with FakeSlack(bot_token=BOT_TOKEN, **(fake_options or {"post_window": 0.1})) as fake:
        cfg = settings_ or settings(slack_api_url=fake.api_url, **(overrides or {}))
        world = await make_world(sessions, settings_=cfg, start=False, **job_options)
        bot = SlackBot(cfg, WorldDomain(world, sessions), card_interval=card_interval,
                       pacer=pacer or SlackPacer(post_interval=0.12),
                       scheduler=scheduler(world) if scheduler is not None else None)
        await bot.start()
        server = make_server(bot, "127.0.0.1", 0, slack_events=True)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                yield Harness(fake, world, bot, http)
        finally:
            server.should_exit = True
            await serving
            await bot.stop()
