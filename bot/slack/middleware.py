"""Global Bolt middleware: dependency injection and delivery de-duplication.

Slack retries an event it thinks failed (``X-Slack-Retry-Num``) and sometimes delivers the same request twice.
``DeliveryGuard`` claims each delivery in the database (``services.claims``) for a while and answers a repeat
with a bare 200 without running any listener, so a retry or duplicate never starts a second lab or a second
destroy, whichever replica it reaches (Slack's last retry comes 5 minutes after the first delivery).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.slack.deps import SlackDeps
from services import claims
from services.db import utcnow

log = logging.getLogger(__name__)

Next = Callable[[], Awaitable[None]]


def delivery_key(body: dict[str, Any]) -> str | None:
    """What identifies one delivery: the event id, or the trigger id of a command, click or submission."""
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    if body.get("trigger_id"):
        kind = body.get("type") or body.get("command") or "request"
        action = (body.get("actions") or [{}])[0].get("action_ts", "")
        return f"{kind}:{body['trigger_id']}:{action}"
    return None


class DeliveryGuard:
    """Answers repeated deliveries with 200 and nothing else (see the module docstring)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, ttl: float = 900.0) -> None:
        self.sessions, self.ttl = sessions, timedelta(seconds=ttl)
        self.duplicates = 0

    async def first_time(self, key: str) -> bool:
        """Claim ``key``; False when some labbot process claimed it within the TTL."""
        return await claims.claim(self.sessions, "delivery:" + key, until=utcnow() + self.ttl)

    async def __call__(self, req: AsyncBoltRequest, body: dict[str, Any], next: Next) -> BoltResponse | None:
        key = delivery_key(body)
        if key is not None and not await self.first_time(key):
            self.duplicates += 1
            retry = req.headers.get("x-slack-retry-num", [""])[0] if req.headers else ""
            log.info("ignoring a repeated delivery (%s%s)", key.split(":", 1)[0], f", retry {retry}" if retry else "")
            return BoltResponse(status=200, body="")
        await next()
        return None


def inject(deps: SlackDeps) -> Callable[..., Awaitable[None]]:
    """Middleware that puts ``deps`` into Bolt's context (listeners take a ``deps`` argument)."""

    async def inject_deps(context: dict[str, Any], next: Next) -> None:
        context["deps"] = deps
        await next()

    return inject_deps
