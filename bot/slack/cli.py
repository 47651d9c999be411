"""``labbot run``: the Slack bot (Socket Mode with SLACK_APP_TOKEN, else HTTP on --host/--port)."""

from __future__ import annotations

import asyncio
import logging

import typer

from bot.logs import configure_logging
from config.settings import load_settings
from services.crypto import require_strong_secret_key

log = logging.getLogger(__name__)


def run_command(
    host: str = typer.Option("127.0.0.1", help="Address for /slack/events, /healthz and /metrics."),
    port: int = typer.Option(3000, min=1, max=65535, help="Port for the HTTP server."),
) -> None:
    """Run the Slack bot until interrupted."""
    settings = load_settings()
    settings.require_slack()
    require_strong_secret_key(settings)
    configure_logging(settings.log_level)
    from bot.slack.runners import run_bot

    asyncio.run(run_bot(settings, host=host, port=port))
