"""The ZStack REST API: a typed async client (``ZStackClient``), its route table, queries and errors.

Names are exported lazily (PEP 562) so that ``python -m services.zstack.routes`` does not import the route
module twice.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ZStackClient": "services.zstack.client",
    "ZStackError": "services.zstack.errors",
    "ZStackAmbiguousError": "services.zstack.errors",
    "ZStackAnswerTooLargeError": "services.zstack.errors",
    "ZStackAuthError": "services.zstack.errors",
    "ZStackCapacityError": "services.zstack.errors",
    "ZStackInvalidArgumentError": "services.zstack.errors",
    "ZStackNotFoundError": "services.zstack.errors",
    "ZStackOperationError": "services.zstack.errors",
    "ZStackSessionError": "services.zstack.errors",
    "ZStackTimeoutError": "services.zstack.errors",
    "ZStackUnreachableError": "services.zstack.errors",
    "PollPolicy": "services.zstack.polling",
    "RetryPolicy": "services.zstack.polling",
    "Cond": "services.zstack.query",
    "Query": "services.zstack.query",
    "eq": "services.zstack.query",
    "ne": "services.zstack.query",
    "in_": "services.zstack.query",
    "not_in": "services.zstack.query",
    "like": "services.zstack.query",
    "not_like": "services.zstack.query",
    "is_null": "services.zstack.query",
    "not_null": "services.zstack.query",
    "CallStats": "services.zstack.wire",
    "deadline_in": "services.zstack.wire",
    "new_uuid": "services.zstack.wire",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'services.zstack' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
