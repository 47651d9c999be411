"""The ZStack REST API: a typed async client (``ZStackClient``), its route table, queries and errors."""

from __future__ import annotations

from services.zstack.client import ZStackClient
from services.zstack.errors import (
    ZStackAmbiguousError,
    ZStackAuthError,
    ZStackCapacityError,
    ZStackError,
    ZStackInvalidArgumentError,
    ZStackNotFoundError,
    ZStackOperationError,
    ZStackSessionError,
    ZStackTimeoutError,
    ZStackUnreachableError,
)
from services.zstack.polling import PollPolicy, RetryPolicy
from services.zstack.query import Cond, Query, eq, in_, is_null, like, ne, not_in, not_like, not_null
from services.zstack.wire import CallStats, deadline_in, new_uuid

__all__ = [
    "CallStats",
    "Cond",
    "PollPolicy",
    "Query",
    "RetryPolicy",
    "ZStackAmbiguousError",
    "ZStackAuthError",
    "ZStackCapacityError",
    "ZStackClient",
    "ZStackError",
    "ZStackInvalidArgumentError",
    "ZStackNotFoundError",
    "ZStackOperationError",
    "ZStackSessionError",
    "ZStackTimeoutError",
    "ZStackUnreachableError",
    "deadline_in",
    "eq",
    "in_",
    "is_null",
    "like",
    "ne",
    "new_uuid",
    "not_in",
    "not_like",
    "not_null",
]
