"""Which language to answer a Slack user in: the locale Slack keeps for them, when it is one labbot speaks.

``users.info`` with ``include_locale=true`` (scope ``users:read``; docs.slack.dev/reference/methods/users.info)
answers ``user.locale`` such as ``zh-CN`` or ``en-US`` only when asked for it. The answer is cached per user for
``ttl`` seconds (a failure for ``failure_ttl``), at most ``max_users`` users are kept, one lookup per user runs at a
time, and a lookup that takes longer than ``deadline`` seconds is not waited for (the request is answered in the
default language; Slack wants the ack within 3 s). A locale labbot has no catalogue for means the default.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from services.i18n import normalize_language, set_request_language

log = logging.getLogger(__name__)

Next = Callable[[], Awaitable[None]]


class SlackLocales:
    """A user's language (``en``/``zh_CN``) from their Slack locale, or None when Slack does not say."""

    def __init__(self, client: AsyncWebClient, *, ttl: float = 3600.0, failure_ttl: float = 300.0,
                 max_users: int = 5000, deadline: float = 1.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl, self.failure_ttl, self.max_users, self.deadline = ttl, failure_ttl, max_users, deadline
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._pending: dict[str, asyncio.Task[tuple[str | None, float]]] = {}
        self.lookups = 0
        self._warned = False

    async def language(self, user_id: str) -> str | None:
        entry = self._cache.get(user_id)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        task = self._pending.get(user_id)
        if task is None:
            task = asyncio.ensure_future(self._lookup(user_id))
            self._pending[user_id] = task
            task.add_done_callback(lambda done, user=user_id: self._store(user, done))
        try:
            language, _ttl = await asyncio.wait_for(asyncio.shield(task), self.deadline)
        except TimeoutError:
            return None  # the lookup goes on and fills the cache for the next request
        return language

    def _store(self, user_id: str, task: asyncio.Task[tuple[str | None, float]]) -> None:
        self._pending.pop(user_id, None)
        if task.cancelled() or task.exception() is not None:
            return
        language, ttl = task.result()
        self._cache[user_id] = (self._clock() + ttl, language)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self.max_users:
            self._cache.popitem(last=False)

    async def _lookup(self, user_id: str) -> tuple[str | None, float]:
        self.lookups += 1
        try:
            answer = await self.client.users_info(user=user_id, include_locale=True)
        except (SlackApiError, SlackClientError, OSError, TimeoutError) as err:
            if not self._warned:  # e.g. missing_scope: say it once, not on every request
                log.warning("cannot read Slack users' locales (users.info): %s; answering in the default language",
                            type(err).__name__)
                self._warned = True
            return None, self.failure_ttl
        user = answer.get("user") or {}
        locale = user.get("locale") if isinstance(user, dict) else None
        return normalize_language(locale if isinstance(locale, str) else None), self.ttl


def request_user(body: dict[str, Any]) -> str | None:
    """The user a request comes from: a slash command, a click or form, or an event."""
    if isinstance(body.get("user_id"), str):
        return body["user_id"]
    user = body.get("user")
    if isinstance(user, dict) and isinstance(user.get("id"), str):
        return user["id"]
    event = body.get("event")
    if isinstance(event, dict) and isinstance(event.get("user"), str):
        return event["user"]
    return None


def answer_in_users_language(locales: SlackLocales) -> Callable[..., Awaitable[None]]:
    """Middleware: the rest of the request (and the listener task Bolt starts inside it) speaks the user's language.

    Bolt runs an acked listener in a task it creates within ``next()``, and a task copies the context it is created
    in, so the ContextVar set here reaches the listener and everything it calls.
    """

    async def user_language(body: dict[str, Any], next: Next) -> None:
        user = request_user(body)
        set_request_language(await locales.language(user) if user else None)
        await next()

    return user_language
