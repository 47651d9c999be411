"""Turning a request into API parameters the way ZStack's RestServer does (zstack-api.md §6).

POST/PUT: the JSON object under the route's body key (``params``, ``lowerFirst(Action)``, or ``"null"``),
with ``systemTags``/``userTags`` taken from the top level or from inside it. GET/DELETE: the query string,
where a repeated key or ``key.0=``/``key.1=`` makes a list and ``key.sub=`` a map. Path variables win over
anything in the body or the query.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from sandbox.zstack_sim.errors import RestError
from services.zstack.routes import Route

log = logging.getLogger(__name__)

_INDEXED = re.compile(r"^(\w+)\.(\d+)$")
_MAPPED = re.compile(r"^(\w+)\.(\w+)$")


def build_params(
    api: Route, body: dict[str, Any], path_vars: dict[str, str], query_items: Iterable[tuple[str, str]]
) -> tuple[dict[str, Any], dict[str, list[str]], dict[str, list[str]]]:
    """(parameters, {"systemTags": [...], "userTags": [...]}, the raw query string as a multi-map)."""
    query: dict[str, list[str]] = {}
    for key, value in query_items:
        query.setdefault(key, []).append(value)
    params: dict[str, Any]
    if api.body_key is not None:
        inner = body.get(api.body_key, {})
        if inner is None:
            inner = {}
        if not isinstance(inner, dict):
            raise RestError(400, f"the value of '{api.body_key}' in the body must be a JSON object")
        params = dict(inner)
    else:
        params = _from_query(query) if not api.is_query else {}
    tags = {name: _tag_list(params.pop(name, None) or body.get(name)) for name in ("systemTags", "userTags")}
    params.update(path_vars)
    return params, tags, query


def _from_query(query: dict[str, list[str]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, values in query.items():
        indexed, mapped = _INDEXED.match(key), _MAPPED.match(key)
        if indexed:
            params.setdefault(indexed.group(1), []).extend(values)
        elif mapped:
            params.setdefault(mapped.group(1), {})[mapped.group(2)] = values[-1]
        elif len(values) > 1:
            params[key] = list(values)
        else:
            params[key] = values[0]
    return params


def _tag_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise RestError(400, "systemTags and userTags must be lists of strings")
    return list(value)
