"""ZStack query semantics over rendered inventories: ``q`` conditions, joins, tags, sort, paging, counts.

Operators are matched in ZStack's order (``!=``, ``>=``, ``<=``, ``!?=``, ``!~=``, ``~=``, ``?=``, ``=``, ``>``,
``<``, ``is null``, ``not null``); conditions are ANDed. A dotted field walks into nested lists
(``vmNics.ip``) or joins through a ``<name>Uuid`` field (``zone.name``); ``__userTag__`` and ``__systemTag__``
match the resource's tags. As in SQL, a null never satisfies a comparison.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.zstack_sim.errors import RestError, argerr
from sandbox.zstack_sim.store import SimState
from sandbox.zstack_sim.views import FIELDS, render

log = logging.getLogger(__name__)

_OPERATORS = ("!=", ">=", "<=", "!?=", "!~=", "~=", "?=", "=", ">", "<")
_NULL_OPERATORS = ("is null", "not null")
_JOINS: dict[str, tuple[str, str]] = {
    "zone": ("zoneUuid", "zone"), "cluster": ("clusterUuid", "cluster"), "host": ("hostUuid", "host"),
    "image": ("imageUuid", "image"), "l3Network": ("l3NetworkUuid", "l3"), "l2Network": ("l2NetworkUuid", "l2"),
    "vmInstance": ("vmInstanceUuid", "vm"), "primaryStorage": ("primaryStorageUuid", "primary_storage"),
    "instanceOffering": ("instanceOfferingUuid", "instance_offering"),
}
_TAG_FIELDS = {"__userTag__": "User", "__systemTag__": "System"}


@dataclass(frozen=True)
class Condition:
    """One parsed ``q`` condition."""

    field: str
    op: str
    value: str | None

    @classmethod
    def parse(cls, text: str) -> Condition:
        """Parse one ``q`` value as RestServer.handleQueryApi does: the first operator *in ZStack's order*
        that occurs anywhere in the text splits it once (so ``name=a!=b`` is the field ``name=a`` and the
        value ``b``); the field is trimmed, the value is not; no operator, or nothing on one side, is a 400."""
        for op in _OPERATORS + _NULL_OPERATORS:
            if op not in text:
                continue
            name, _, value = text.partition(op)
            if op in _NULL_OPERATORS:
                return cls(name.strip(), op, None)
            if not name or not value:
                raise RestError(400, f"Invalid query parameter. The '{text}' in parameter[q] is not a key-value "
                                     f"pair split by {op}")
            return cls(name.strip(), op, value)
        raise RestError(400, f"Invalid query parameter. The '{text}' in the parameter[q] doesn't contain any query "
                             f"operator. Valid query operators are {list(_OPERATORS + _NULL_OPERATORS)}")


def apply(
    state: SimState, kind: str, items: list[dict[str, Any]], params: dict[str, list[str]]
) -> dict[str, Any]:
    """Answer a query: filter with ``q``, then ``sort``, ``start``/``limit``, ``fields``, ``count``."""
    conditions = [Condition.parse(text) for text in params.get("q", [])]
    for cond in conditions:
        _check_field(kind, cond.field)
    matched = [item for item in items if all(_matches(state, kind, item, c) for c in conditions)]
    body: dict[str, Any] = {}
    if _flag(params, "count"):
        return {"total": len(matched)}
    if _flag(params, "replyWithCount"):
        body["total"] = len(matched)
    # RestServer trims the value: ``sort=+name`` sent unencoded arrives as `` name`` and sorts ascending.
    sort = (_one(params, "sort") or "").strip()
    if sort:
        direction, name = (sort[0], sort[1:].lstrip(sort[0])) if sort[0] in "+-" else ("+", sort)
        _check_field(kind, name)
        present = [i for i in matched if i.get(name) is not None]
        absent = [i for i in matched if i.get(name) is None]
        matched = sorted(present, key=lambda i: _sort_key(i[name]), reverse=direction == "-") + absent
    start = _int(params, "start", 0)
    limit = _int(params, "limit", 1000)
    page = matched[start:start + limit]
    fields = [f for f in (_one(params, "fields") or "").split(",") if f]
    if fields:
        for name in fields:
            _check_field(kind, name)
        page = [{k: v for k, v in item.items() if k in fields} for item in page]
    body["inventories"] = page
    return body


def _matches(state: SimState, kind: str, item: dict[str, Any], cond: Condition) -> bool:
    values = _values(state, kind, item, cond.field)
    if cond.op == "is null":
        return not values
    if cond.op == "not null":
        return bool(values)
    if not values:
        return False
    assert cond.value is not None
    test = _TESTS[cond.op]
    if cond.op in ("!=", "!?=", "!~="):
        return all(test(v, cond.value) for v in values)
    return any(test(v, cond.value) for v in values)


def _values(state: SimState, kind: str, item: dict[str, Any], path: str) -> list[Any]:
    if path in _TAG_FIELDS:
        return state.tags_of(str(item.get("uuid") or item.get("resourceUuid")), _TAG_FIELDS[path])
    head, _, rest = path.partition(".")
    if head not in item and head in _JOINS:
        key, target = _JOINS[head]
        joined = state.get(target, item.get(key))
        return _values(state, target, render(state, target, joined), rest) if joined and rest else []
    current: list[Any] = [item]
    for part in path.split("."):
        nxt: list[Any] = []
        for value in current:
            found = value.get(part) if isinstance(value, dict) else None
            if isinstance(found, list):
                nxt.extend(found)
            elif found is not None:
                nxt.append(found)
        current = nxt
    return [v for v in current if not isinstance(v, dict | list)]


def _check_field(kind: str, path: str) -> None:
    head = path.split(".")[0]
    if head in _TAG_FIELDS or head in FIELDS[kind] or head in _JOINS:
        return
    raise argerr(f"condition name[{head}] is invalid, no such field on inventory class[{kind}]")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _compare(value: Any, operand: str) -> int:
    try:
        left, right = float(value), float(operand)
    except (TypeError, ValueError):
        left_s, right_s = _text(value), operand
        return (left_s > right_s) - (left_s < right_s)
    return (left > right) - (left < right)


def _like(value: Any, pattern: str) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, _text(value), re.DOTALL) is not None


_TESTS: dict[str, Callable[[Any, str], bool]] = {
    "=": lambda v, o: _text(v) == o,
    "!=": lambda v, o: _text(v) != o,
    ">": lambda v, o: _compare(v, o) > 0,
    "<": lambda v, o: _compare(v, o) < 0,
    ">=": lambda v, o: _compare(v, o) >= 0,
    "<=": lambda v, o: _compare(v, o) <= 0,
    "?=": lambda v, o: _text(v) in o.split(","),
    "!?=": lambda v, o: _text(v) not in o.split(","),
    "~=": _like,
    "!~=": lambda v, o: not _like(v, o),
}


def _sort_key(value: Any) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, _text(value))


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None  # RestServer reads the first value of a repeated parameter


def _flag(params: dict[str, list[str]], name: str) -> bool:
    return (_one(params, name) or "").lower() == "true"


def _int(params: dict[str, list[str]], name: str, default: int) -> int:
    text = _one(params, name)
    if text is None:
        return default
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise RestError(400, f"Invalid query parameter. '{name}' must be an integer")
    return max(0, int(text))
