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
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request, to_starlette_response
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.app import SlackBot
from bot.metrics import CONTENT_TYPE
from bot.slack.errors import new_error_id
from services import claims

log = logging.getLogger(__name__)

# Slack documents no maximum request size. The largest requests it sends carry a view (a modal's submission:
# views.open refuses views over 250 kB, `view_too_large`) or a message (50 blocks, text up to 40,000
# characters), URL-encoded, which can triple JSON's size: 1 MiB leaves room for both, and a body over it is
# refused while it is being read (bolt-js refuses over 4 MB by default since v5.1.0, for the same reason).
MAX_BODY_BYTES = 1024 * 1024
# Slack's replay window: a request whose timestamp is further than this from now is refused.
SIGNATURE_WINDOW_SECONDS = 300


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
        replays = ReplayGuard(bot.domain.sessions)

        async def events(request: Request) -> Response:
            started = time.perf_counter()
            response = await _slack_event(bot, replays, request)
            bot.metrics.ack_seconds.observe(time.perf_counter() - started)
            return response

        routes.append(Route("/slack/events", events, methods=["POST"]))
    return Starlette(routes=routes)


async def _slack_event(bot: SlackBot, replays: ReplayGuard, request: Request) -> Response:
    """One POST to /slack/events: size, then signature, then replay, then shape, and only then Bolt.

    Nothing of an unauthenticated request is parsed or logged beyond ``request_summary``: Bolt's own
    verification logs the raw body of a bad request, so a bad request never reaches Bolt.
    """
    body = await read_bounded(request, MAX_BODY_BYTES)
    if body is None:
        log.info("refused an oversized Slack request: %s", request_summary(request, None))
        return JSONResponse({"error": "request body too large"}, status_code=413,
                            headers={"connection": "close"})
    secret = bot.settings.slack_signing_secret
    if secret is not None:
        if not valid_signature(secret.get_secret_value(), body, request.headers):
            log.info("refused a Slack request with a bad or stale signature: %s", request_summary(request, len(body)))
            return JSONResponse({"error": "invalid request"}, status_code=401)
        try:
            fresh = await replays.first_time(request.headers)
        except SQLAlchemyError as err:
            # Without the database a delivery cannot be told from a replay, so it is not acted on: 503 makes Slack
            # retry an event or a click, and tells whoever typed a command that it did not go through.
            log.warning("answered 503: could not check a Slack request for replay (database: %s)",
                        type(err).__name__)
            return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
        if not fresh:
            log.info("ignored a replayed Slack request: %s", request_summary(request, len(body)))
            return Response(status_code=200)
    problem = malformed(body, request.headers.get("content-type", ""))
    if problem is not None:
        # Signed but malformed, it would crash Bolt's own middleware (a 500 and a traceback), so it stops here.
        log.info("refused a malformed Slack request: %s", problem)
        return JSONResponse({"error": "malformed request", "detail": problem}, status_code=400)
    try:
        return to_starlette_response(await bot.app.async_dispatch(to_async_bolt_request(request, body)))
    except Exception:  # Bolt itself failed on a request it accepted; the user still gets an answer
        error_id = new_error_id()
        log.exception("error %s: Bolt could not handle a Slack request", error_id)
        return JSONResponse({"error": "bad request", "id": error_id}, status_code=400)


async def read_bounded(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed ``limit`` bytes (nothing more is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or closed for sending its body too slowly (bot.connections)
        return None
    return b"".join(chunks)


def request_summary(request: Request, size: int | None) -> str:
    """What may be logged about a request nobody vouched for: its size, peer and two headers, each bounded and
    escaped (``repr``), so a newline in a header or body can never forge a log record."""
    peer = f"{request.client.host}:{request.client.port}" if request.client else "?"
    shown = "over the limit" if size is None else f"{size} bytes"
    return (f"{shown} from {peer}, content-type {_bounded(request.headers.get('content-type', ''))}, "
            f"timestamp {_bounded(request.headers.get('x-slack-request-timestamp', ''))}")


def _bounded(value: str, limit: int = 40) -> str:
    return ascii(value[:limit]) + ("…" if len(value) > limit else "")


class ReplayGuard:
    """Acts on each signed request once across every replica: its signature is claimed in the database until
    Slack's five-minute window for its timestamp has passed (after which ``valid_signature`` refuses it)."""

    PRUNE_EVERY = 60.0

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._pruned_at = 0.0

    async def first_time(self, headers: Mapping[str, str]) -> bool:
        """Claim this request's signature; False when some labbot process already has."""
        timestamp = int(headers.get("x-slack-request-timestamp", "0"))
        until = datetime.fromtimestamp(timestamp + SIGNATURE_WINDOW_SECONDS + 1, UTC)
        fresh = await claims.claim(self.sessions, "signature:" + headers.get("x-slack-signature", ""), until=until)
        if time.monotonic() - self._pruned_at > self.PRUNE_EVERY:
            self._pruned_at = time.monotonic()
            await claims.prune(self.sessions)
        return fresh


def valid_signature(secret: str, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> bool:
    """Slack's v0 signature over the exact bytes (which need not be UTF-8), from the last five minutes."""
    try:
        timestamp = int(headers.get("x-slack-request-timestamp", ""))
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - timestamp) > SIGNATURE_WINDOW_SECONDS:
        return False
    base = b"v0:" + str(timestamp).encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("x-slack-signature", ""))


def malformed(body: bytes, content_type: str) -> str | None:
    """What makes a request body unusable for Bolt, or None when it is usable.

    Mirrors how Bolt reads a body (``slack_bolt.request.internals.parse_body``): JSON when the content type is
    exactly ``application/json`` or the body starts with ``{``; else a form, whose ``payload`` (if any) is JSON.
    Bolt then assumes Slack's shapes: the JSON is an object, an interaction has a string ``type``, an
    ``event`` is an object with a string ``type``, and the ids it reads for its context are Slack's (see
    ``_context_problem``).
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
        return _context_problem(payload)
    if "payload" in text:
        form = dict(parse_qsl(text, keep_blank_values=True))
        if "payload" in form:
            try:
                payload = json.loads(form["payload"])
            except ValueError:
                return "the payload is not JSON"
            if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
                return "the payload is not an object with a type"
            return _context_problem(payload)
    return None


# What Bolt reads to build a request's context (slack_bolt.request.internals.build_context): these fields as an id
# or an object with an ``id``, in the body and in the objects it descends into, and ``authorizations`` as a list
# of objects. Anything else there (a number, a list) raises inside Bolt before any listener runs.
_CONTEXT_IDS = ("user", "team", "channel", "enterprise")
_CONTEXT_OBJECTS = ("event", "message", "previous_message", "item", "assistant_thread", "view", "function_data")


def _context_problem(payload: dict[str, Any], depth: int = 0) -> str | None:
    for key in _CONTEXT_IDS:
        value = payload.get(key)
        if value is not None and not isinstance(value, str | dict):
            return f"`{key}` is neither an id nor an object"
    for key in ("authorizations", "response_urls"):
        value = payload.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            return f"`{key}` is not a list of objects"
    for inner in [*(payload.get(key) for key in _CONTEXT_OBJECTS), *(payload.get("authorizations") or [])[:1]]:
        if isinstance(inner, dict) and depth < 3 and (problem := _context_problem(inner, depth + 1)):
            return problem
    return None
