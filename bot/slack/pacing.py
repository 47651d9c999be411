"""Client-side pacing for the Slack Web API, so labbot stays under Slack's rate limits instead of hitting them.

chat.postMessage: about one message per second per channel; chat.update: Tier 3, about 50 per minute for the
app in a workspace. The pacer spaces posts per channel and meters updates with a token bucket whose burst plus
a minute's refill stays under 50, and when Slack still answers 429 it holds that method (and channel) back for
the Retry-After Slack gave.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class SlackPacer:
    """Waits until a Slack call may go out; shared by everything that posts or updates messages."""

    def __init__(
        self,
        *,
        post_interval: float = 1.1,
        updates_per_minute: float = 40.0,
        update_burst: int = 10,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.post_interval = post_interval
        self.update_rate = updates_per_minute / 60.0
        self.update_burst = update_burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(update_burst)
        self._refilled = clock()
        self._update_lock = asyncio.Lock()
        self._channel_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._last_post: dict[str, float] = {}
        self._held_until: dict[tuple[str, str], float] = {}

    async def post_slot(self, channel: str) -> None:
        """Return when a chat.postMessage to ``channel`` may be sent (and count it as sent)."""
        async with self._channel_locks[channel]:
            while True:
                now = self._clock()
                ready_at = max(self._last_post.get(channel, float("-inf")) + self.post_interval,
                               self._held_until.get(("chat.postMessage", channel), 0.0))
                if now >= ready_at:
                    self._last_post[channel] = now
                    return
                await self._sleep(ready_at - now)

    async def update_slot(self) -> None:
        """Return when a chat.update may be sent (one token of the workspace-wide bucket)."""
        async with self._update_lock:
            while True:
                now = self._clock()
                self._tokens = min(self.update_burst, self._tokens + (now - self._refilled) * self.update_rate)
                self._refilled = now
                held = self._held_until.get(("chat.update", ""), 0.0)
                if now < held:
                    await self._sleep(held - now)
                    continue
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await self._sleep((1 - self._tokens) / self.update_rate)

    def rate_limited(self, method: str, retry_after: float, channel: str = "") -> None:
        """Slack answered 429: hold ``method`` back (for ``channel``, for posts) for ``retry_after`` seconds."""
        key = (method, channel if method == "chat.postMessage" else "")
        until = self._clock() + max(retry_after, 0.0)
        self._held_until[key] = max(self._held_until.get(key, 0.0), until)
        if method == "chat.update":
            self._tokens = 0.0
        log.warning("Slack rate-limited %s%s; holding it back for %.1fs", method,
                    f" in {channel}" if channel and method == "chat.postMessage" else "", retry_after)
