"""A small builder for ZStack query conditions and options (``q``, ``limit``, ``start``, ``sort``, ...).

ZStack takes each condition as one ``q=<field><op><value>`` query parameter, with no spaces around the
operator, ANDed together; dotted fields join (``vmNics.ip=10.0.0.5``) and ``__userTag__`` /
``__systemTag__`` match tags. Building them here, with the field validated, keeps a stray ``=`` or ``,``
in a value from silently changing what is asked.

    Query([eq("name", "zone-1"), like("__userTag__", "labbot::lab::%")], limit=10, sort="-createDate")
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

log = logging.getLogger(__name__)

Operator = Literal["=", "!=", ">", "<", ">=", "<=", "?=", "!?=", "~=", "!~=", "is null", "not null"]
_FIELD = re.compile(r"^(__userTag__|__systemTag__|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$")
_LIST_OPS = ("?=", "!?=")


@dataclass(frozen=True)
class Cond:
    """One query condition; ``render()`` gives the text ZStack expects after ``q=``."""

    field: str
    op: Operator
    value: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not _FIELD.fullmatch(self.field):
            raise ValueError(f"not a ZStack query field: {self.field!r}")
        if self.op in ("is null", "not null"):
            if self.value is not None:
                raise ValueError(f"{self.op!r} takes no value")
            return
        if self.value is None:
            raise ValueError(f"{self.op!r} needs a value")
        if self.op in _LIST_OPS:
            if isinstance(self.value, str) or not self.value:
                raise ValueError(f"{self.op!r} needs a non-empty list of values")
            if any("," in v for v in self.value):
                raise ValueError("values of an in / not-in condition cannot contain ','")
        elif not isinstance(self.value, str):
            raise ValueError(f"{self.op!r} needs a single value")

    def render(self) -> str:
        """``field<op>value`` (or ``field is null``), as sent in one ``q`` parameter."""
        if self.op in ("is null", "not null"):
            return f"{self.field} {self.op}"
        value = ",".join(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.field}{self.op}{value}"


def eq(name: str, value: str | int | bool) -> Cond:
    """``name = value``."""
    return Cond(name, "=", _text(value))


def ne(name: str, value: str | int | bool) -> Cond:
    """``name != value``."""
    return Cond(name, "!=", _text(value))


def gt(name: str, value: str | int) -> Cond:
    """``name > value``."""
    return Cond(name, ">", _text(value))


def lt(name: str, value: str | int) -> Cond:
    """``name < value``."""
    return Cond(name, "<", _text(value))


def ge(name: str, value: str | int) -> Cond:
    """``name >= value``."""
    return Cond(name, ">=", _text(value))


def le(name: str, value: str | int) -> Cond:
    """``name <= value``."""
    return Cond(name, "<=", _text(value))


def in_(name: str, values: Iterable[str]) -> Cond:
    """``name`` is one of ``values`` (``?=``)."""
    return Cond(name, "?=", tuple(values))


def not_in(name: str, values: Iterable[str]) -> Cond:
    """``name`` is none of ``values`` (``!?=``)."""
    return Cond(name, "!?=", tuple(values))


def like(name: str, pattern: str) -> Cond:
    """SQL LIKE (``~=``): ``%`` is any run of characters, ``_`` one character."""
    return Cond(name, "~=", pattern)


def not_like(name: str, pattern: str) -> Cond:
    """SQL NOT LIKE (``!~=``)."""
    return Cond(name, "!~=", pattern)


def is_null(name: str) -> Cond:
    """``name is null``."""
    return Cond(name, "is null")


def not_null(name: str) -> Cond:
    """``name not null``."""
    return Cond(name, "not null")


@dataclass(frozen=True)
class Query:
    """Conditions plus the options of a ZStack query; ``params()`` gives the query-string pairs."""

    conditions: Sequence[Cond | str] = ()
    limit: int | None = None
    start: int | None = None
    sort: str | None = None  # "+field" or "-field"
    fields: Sequence[str] = field(default_factory=tuple)
    reply_with_count: bool = False
    count: bool = False

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must be >= 0")
        if self.start is not None and self.start < 0:
            raise ValueError("start must be >= 0")
        if self.sort is not None and not _FIELD.fullmatch(self.sort.lstrip("+-")):
            raise ValueError(f"not a sort field: {self.sort!r}")
        for name in self.fields:
            if not _FIELD.fullmatch(name):
                raise ValueError(f"not a ZStack field: {name!r}")

    def with_page(self, *, start: int, limit: int) -> Query:
        """The same query restricted to one page."""
        return replace(self, start=start, limit=limit)

    def params(self) -> list[tuple[str, str]]:
        """Query-string pairs in the order the SDK sends them (``q`` once per condition)."""
        pairs = [("q", c.render() if isinstance(c, Cond) else _raw(c)) for c in self.conditions]
        if self.limit is not None:
            pairs.append(("limit", str(self.limit)))
        if self.start is not None:
            pairs.append(("start", str(self.start)))
        if self.count:
            pairs.append(("count", "true"))
        if self.reply_with_count:
            pairs.append(("replyWithCount", "true"))
        if self.sort:
            pairs.append(("sort", self.sort if self.sort[0] in "+-" else f"+{self.sort}"))
        if self.fields:
            pairs.append(("fields", ",".join(self.fields)))
        return pairs


def as_query(conditions: Query | Sequence[Cond | str] | None) -> Query:
    """Accept a Query, a list of conditions (Cond or raw ``q`` text), or None (everything)."""
    if conditions is None:
        return Query()
    if isinstance(conditions, Query):
        return conditions
    return Query(conditions=tuple(conditions))


def _text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _raw(text: str) -> str:
    # Raw conditions are allowed for what the builder lacks, but must still look like one condition.
    if not text or "\n" in text or not re.match(r"^[A-Za-z_][\w.]*( is null| not null|[!<>~?]*=|[<>])", text):
        raise ValueError(f"not a ZStack query condition: {text!r}")
    return text
