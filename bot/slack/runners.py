"""Running the Slack front end: HTTP (Starlette on uvicorn) or Socket Mode (plus the health/metrics server)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bot.app import SlackBot, build_domain, build_scheduler
from bot.connections import GuardedH11Protocol
from bot.http import build_http_app
from bot.metrics import Metrics
from config.settings import Settings

log = logging.getLogger(__name__)

# slack_sdk logs every request body at DEBUG, and labbot's private replies carry lab credentials (/lab access):
# these loggers stay at INFO or above even when labbot itself runs at DEBUG.
# How long an idle keep-alive connection stays open after a response (uvicorn's default).
KEEP_ALIVE_SECONDS = 5

BODY_LOGGERS = ("slack_sdk.web", "slack_sdk.webhook", "slack_sdk.socket_mode", "slack_bolt")


def quiet_body_loggers() -> None:
    """Keep the Slack libraries' request-body logging off whatever the root level (secrets never reach logs)."""
    for name in BODY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def make_server(bot: SlackBot, host: str, port: int, *, slack_events: bool) -> uvicorn.Server:
    """A uvicorn server for the bot's HTTP app (signal handling is left to the caller)."""
    limits = bot.settings
    protocol = GuardedH11Protocol.configure(header_timeout=limits.http_header_timeout_seconds,
                                            body_timeout=limits.http_body_timeout_seconds,
                                            max_connections=limits.http_max_connections)
    config = uvicorn.Config(build_http_app(bot, slack_events=slack_events), host=host, port=port, lifespan="off",
                            log_level="warning", access_log=False, http=protocol,
                            timeout_keep_alive=KEEP_ALIVE_SECONDS)
    return uvicorn.Server(config)


async def serve_socket_mode(bot: SlackBot, server: uvicorn.Server, stop: asyncio.Event) -> None:
    """Connect to Slack over Socket Mode and serve /healthz and /metrics until ``stop`` is set."""
    assert bot.settings.slack_app_token is not None
    handler = AsyncSocketModeHandler(bot.app, bot.settings.slack_app_token.get_secret_value())
    await handler.connect_async()
    log.info("connected to Slack over Socket Mode")
    http = asyncio.create_task(server.serve(), name="http")
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        await http
        await handler.close_async()


async def run_bot(settings: Settings, *, host: str, port: int, stop: asyncio.Event | None = None,
                  handle_signals: bool = True) -> None:
    """Start everything (domain, scheduler, Slack app), serve until SIGINT/SIGTERM (or ``stop``), then shut down
    cleanly. ``handle_signals=False`` leaves the process's signal handlers alone (a test running the bot)."""
    stop = stop or asyncio.Event()
    quiet_body_loggers()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
    metrics = Metrics()
    domain = build_domain(settings, metrics)
    bot = SlackBot(settings, domain, metrics=metrics, scheduler=build_scheduler(domain))
    await bot.start()
    socket_mode = settings.slack_app_token is not None
    server = make_server(bot, host, port, slack_events=not socket_mode)
    try:
        if socket_mode:
            await serve_socket_mode(bot, server, stop)
        else:
            log.info("serving Slack events on http://%s:%d/slack/events", host, port)
            http = asyncio.create_task(server.serve(), name="http")
            await stop.wait()
            server.should_exit = True
            await http
    finally:
        await bot.stop()
