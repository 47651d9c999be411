"""Who is in a Slack user group, for ``LABBOT_ALLOWED_USERS`` entries that name a group (``S…``).

``usergroups.users.list`` (scope ``usergroups:read``) answers ``{"ok": true, "users": ["U…", …]}`` for one group.
Answers are cached for ``ttl`` seconds (a failed lookup for ``failure_ttl``, so a missing scope is not asked
for on every create), at most ``max_groups`` groups and ``max_members`` ids per group are kept, and one lookup
per group runs at a time: a burst of creates costs one call, well inside the method's Tier 2 limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)


class SlackGroupDirectory:
    """``services.labs.service.GroupDirectory`` over the Slack Web API, cached and bounded."""

    def __init__(self, client: AsyncWebClient, *, ttl: float = 300.0, failure_ttl: float = 60.0,
                 max_groups: int = 64, max_members: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl, self.failure_ttl = ttl, failure_ttl
        self.max_groups, self.max_members = max_groups, max_members
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, frozenset[str]]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self.lookups = 0

    async def members(self, group_id: str) -> frozenset[str]:
        """The user ids in ``group_id`` (empty when Slack does not say: the group then admits nobody)."""
        cached = self._fresh(group_id)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(group_id, asyncio.Lock())
        async with lock:
            cached = self._fresh(group_id)
            if cached is not None:
                return cached
            members, ttl = await self._lookup(group_id)
            self._cache[group_id] = (self._clock() + ttl, members)
            self._cache.move_to_end(group_id)
            while len(self._cache) > self.max_groups:
                dropped, _ = self._cache.popitem(last=False)
                self._locks.pop(dropped, None)
            return members

    def _fresh(self, group_id: str) -> frozenset[str] | None:
        entry = self._cache.get(group_id)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    async def _lookup(self, group_id: str) -> tuple[frozenset[str], float]:
        self.lookups += 1
        try:
            answer = await self.client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as err:
            log.warning("could not list the members of user group %s: %s", group_id,
                        err.response.get("error", "unknown error"))
            return frozenset(), self.failure_ttl
        users = answer.get("users") or []
        if len(users) > self.max_members:
            log.warning("user group %s has %d members; only the first %d are admitted", group_id, len(users),
                        self.max_members)
        return frozenset(str(u) for u in users[: self.max_members]), self.ttl
