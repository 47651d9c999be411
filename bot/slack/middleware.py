"""Global Bolt middleware: dependency injection and delivery de-duplication.

Slack retries an event it thinks failed (``X-Slack-Retry-Num``) and sometimes delivers the same request twice.
``DeliveryGuard`` remembers what it has seen for a while and answers a repeat with a bare 200 without running any
listener, so a retry or duplicate never starts a second lab or a second destroy in this process; across
replicas the service's own rules (one live lab per name, one destroy per lab) keep the same promise.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.slack.deps import SlackDeps

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

    def __init__(self, *, ttl: float = 900.0, max_entries: int = 50_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_entries, self._clock = ttl, max_entries, clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.duplicates = 0

    def first_time(self, key: str) -> bool:
        """Record ``key``; False when it was seen within the TTL."""
        now = self._clock()
        while self._seen and (next(iter(self._seen.values())) < now - self.ttl or len(self._seen) > self.max_entries):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True

    async def __call__(self, req: AsyncBoltRequest, body: dict[str, Any], next: Next) -> BoltResponse | None:
        key = delivery_key(body)
        if key is not None and not self.first_time(key):
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
