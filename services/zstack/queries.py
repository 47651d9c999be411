"""Queries over ``ZStackCore``: every page of a Query API, counts, and one inventory by uuid.

ZStack answers at most ``limit`` (default 1000) inventories per request; ``query`` reads page after page in a
stable order so that a caller always gets everything that matched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from services.zstack.core import ZStackCore
from services.zstack.errors import ZStackSessionError
from services.zstack.query import Cond, Query, as_query, eq, like
from services.zstack.routes import Route, route

log = logging.getLogger(__name__)


class QueriesMixin(ZStackCore):
    """Query APIs with paging, counts and get-by-uuid."""

    async def query(
        self,
        resource_action: str,
        conditions: Query | Sequence[Cond | str] | None = None,
        *,
        page_size: int = 1000,
        deadline: float | None = None,
    ) -> list[dict[str, Any]]:
        """Run a Query API and return every matching inventory, reading ``page_size`` at a time.

        A Query with its own ``limit``/``start`` is sent as is (one page). Otherwise pages are read in
        ``+uuid`` order (unless the query sorts) so that they neither overlap nor skip.
        """
        api = route(resource_action)
        if not api.is_query:
            raise ValueError(f"{resource_action} is not a Query API")
        query = as_query(conditions)
        if query.limit is not None or query.start is not None:
            return list((await self._query_page(api, query, deadline)).get("inventories") or [])
        if query.sort is None:
            query = Query(conditions=query.conditions, sort="+uuid", fields=query.fields)
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        start = 0
        while True:
            body = await self._query_page(api, query.with_page(start=start, limit=page_size), deadline)
            page = list(body.get("inventories") or [])
            for item in page:
                key = str(item.get("uuid") or id(item))
                if key not in seen:
                    seen.add(key)
                    results.append(item)
            if len(page) < page_size:
                return results
            start += page_size

    async def count(self, resource_action: str, conditions: Query | Sequence[Cond | str] | None = None, *,
                    deadline: float | None = None) -> int:
        """How many resources match (``count=true``), without fetching them."""
        query = as_query(conditions)
        body = await self._query_page(route(resource_action), Query(conditions=query.conditions, count=True),
                                      deadline)
        return int(body.get("total") or 0)

    async def get_raw(self, resource_action: str, uuid: str, *, deadline: float | None = None) -> dict[str, Any] | None:
        """One inventory by uuid through a Query API, or None when there is none."""
        found = await self.query(resource_action, Query(conditions=(eq("uuid", uuid),), limit=1), deadline=deadline)
        return found[0] if found else None

    async def find_by_user_tag(self, query_action: str, pattern: str, *,
                               deadline: float | None = None) -> list[dict[str, Any]]:
        """Resources of one kind with a user tag matching ``pattern`` (SQL LIKE: ``labbot::lab::%``).

        ZStack queries take ``__userTag__`` conditions directly (zstack-api.md §9); this is what an orphan
        sweep uses to find what labbot made.
        """
        return await self.query(query_action, [like("__userTag__", pattern)], deadline=deadline)

    async def _query_page(self, api: Route, query: Query, deadline: float | None) -> dict[str, Any]:
        for attempt in (1, 2):
            session = await self._current_session()
            try:
                return await self._request(api, {}, {}, deadline=deadline, session=session,
                                           query_params=query.params())
            except ZStackSessionError:
                if attempt == 2:
                    raise
                await self._renew_session(session)
        raise AssertionError("unreachable")
