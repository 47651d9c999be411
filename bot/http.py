"""The HTTP face of labbot: ``POST /slack/events`` (Bolt), ``GET /healthz`` and ``GET /metrics``.

In Socket Mode the same app is served without ``/slack/events``, for health checks and scraping.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.app import SlackBot
from bot.metrics import CONTENT_TYPE
from bot.slack.errors import new_error_id

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
            body = await request.body()  # Starlette keeps it, so Bolt reads the same bytes
            response: Response
            problem = malformed(body, request.headers.get("content-type", ""))
            if problem is not None:
                # Signed but malformed, it would crash Bolt's own middleware (a 500 and a traceback), so it stops
                # here; unsigned, it gets the 401 Bolt gives, and no hint about its shape.
                if not await signed(request):
                    response = JSONResponse({"error": "invalid request"}, status_code=401)
                else:
                    log.info("refused a malformed Slack request: %s", problem)
                    response = JSONResponse({"error": "malformed request", "detail": problem}, status_code=400)
            else:
                try:
                    response = await handler.handle(request)
                except Exception:  # Bolt itself failed on a request it accepted; the user still gets an answer
                    error_id = new_error_id()
                    log.exception("error %s: Bolt could not handle a Slack request", error_id)
                    response = JSONResponse({"error": "bad request", "id": error_id}, status_code=400)
            bot.metrics.ack_seconds.observe(time.perf_counter() - started)
            return response

        async def signed(request: Request) -> bool:
            secret = bot.settings.slack_signing_secret
            return secret is None or valid_signature(secret.get_secret_value(), await request.body(), request.headers)

        routes.append(Route("/slack/events", events, methods=["POST"]))
    return Starlette(routes=routes)


def valid_signature(secret: str, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> bool:
    """Slack's v0 signature over the exact bytes (which need not be UTF-8), from the last five minutes."""
    try:
        timestamp = int(headers.get("x-slack-request-timestamp", ""))
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - timestamp) > 300:
        return False
    base = b"v0:" + str(timestamp).encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("x-slack-signature", ""))


def malformed(body: bytes, content_type: str) -> str | None:
    """What makes a request body unusable for Bolt, or None when it is usable.

    Mirrors how Bolt reads a body (``slack_bolt.request.internals.parse_body``): JSON when the content type is
    exactly ``application/json`` or the body starts with ``{``; else a form, whose ``payload`` (if any) is JSON.
    Bolt then assumes Slack's shapes: the JSON is an object, an interaction has a string ``type``, and an
    ``event`` is an object with a string ``type``.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    if not text:
        return None
    payload: Any
    if content_type == "application/json" or text.startswith("{"):
        try:
            payload = json.loads(text)
        except ValueError:
            return "the body is not JSON"
        if not isinstance(payload, dict):
            return "the body is not a JSON object"
        if "event" in payload or payload.get("type") == "event_callback":
            event = payload.get("event")
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                return "an event that is not an object with a type"
        return None
    if "payload" in text:
        form = dict(parse_qsl(text, keep_blank_values=True))
        if "payload" in form:
            try:
                payload = json.loads(form["payload"])
            except ValueError:
                return "the payload is not JSON"
            if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
                return "the payload is not an object with a type"
    return None
