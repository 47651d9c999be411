"""The HTTP face of labbot: ``POST /slack/events`` (Bolt), ``GET /healthz`` and ``GET /metrics``.

In Socket Mode the same app is served without ``/slack/events``, for health checks and scraping.
"""

from __future__ import annotations

import logging
import time

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.app import SlackBot
from bot.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)


def build_http_app(bot: SlackBot, *, slack_events: bool = True) -> Starlette:
    """The Starlette app for a started ``bot``."""

    async def healthz(_request: Request) -> JSONResponse:
        healthy, status = await bot.health()
        return JSONResponse({"status": "ok" if healthy else "unhealthy", **status}, status_code=200 if healthy else 503)

    async def metrics(_request: Request) -> Response:
        try:
            await bot.metrics.refresh_labs(bot.domain.sessions)
        except Exception as err:  # scraping must work while the database is down; the gauge keeps its last value
            log.warning("metrics: could not count labs: %s", type(err).__name__)
        return Response(bot.metrics.render(), media_type=CONTENT_TYPE)

    routes = [Route("/healthz", healthz, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]
    if slack_events:
        handler = AsyncSlackRequestHandler(bot.app)

        async def events(request: Request) -> Response:
            started = time.perf_counter()
            response = await handler.handle(request)
            bot.metrics.ack_seconds.observe(time.perf_counter() - started)
            return response

        routes.append(Route("/slack/events", events, methods=["POST"]))
    return Starlette(routes=routes)
