"""The simulator's errors: ZStack ``ErrorCode`` bodies (503) and the REST layer's plain-text refusals.

Codes and descriptions are ZStack's own (conf/errorCodes/*.xml); ``details`` follow the wording of the
server code where the reference gives it.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

DESCRIPTIONS = {
    "SYS.1000": "An internal error happened in system",
    "SYS.1001": "A message or a operation timeout",
    "SYS.1002": "Unable to create a resource",
    "SYS.1003": "A resource can not be found",
    "SYS.1006": "An operation failed",
    "SYS.1007": "One or more API argument is invalid",
    "SYS.1012": "The management node is unavailable",
    "ID.1000": "Unable to authenticate a user",
    "ID.1001": "The session is invalid, either wrong session id or the session has been expired",
    "HOST_ALLOCATION.1000": "No available host found",
    "HOST_ALLOCATION.1001": "No available nic found",
    "VM.1010": "VM is not in state that allows required operation",
}


class ApiError(Exception):
    """A failed API: answered as HTTP 503 ``{"error": {...}}`` (at once for sync APIs, on the poll for async)."""

    def __init__(self, code: str, details: str, *, cause: ApiError | None = None) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details
        self.cause = cause

    def body(self) -> dict[str, Any]:
        """The ``ErrorCode`` JSON object (null fields omitted, as ZStack's Gson does)."""
        error: dict[str, Any] = {"code": self.code, "description": DESCRIPTIONS.get(self.code, self.code),
                                 "details": self.details}
        if self.cause is not None:
            error["cause"] = self.cause.body()
        return error


class RestError(Exception):
    """A refusal of the REST layer itself: a plain-text body with a 4xx status (no ErrorCode)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.text = text


def argerr(details: str) -> ApiError:
    """SYS.1007: an argument is invalid."""
    return ApiError("SYS.1007", details)


def operr(details: str) -> ApiError:
    """SYS.1006: the operation failed."""
    return ApiError("SYS.1006", details)


def not_found(field: str, uuid: str, vo: str) -> ApiError:
    """SYS.1003 as the API interceptor words it for a uuid field naming nothing."""
    return ApiError("SYS.1003", f"invalid field[{field}], resource[uuid:{uuid}, type:{vo}] not found")


def missing(field: str, action: str) -> ApiError:
    """SYS.1007 for a mandatory parameter that was not given."""
    return argerr(f"field[{field}] of message[API{action}Msg] is mandatory, can not be null")


def wrong_vm_state(vm: dict[str, Any], action: str, allowed: list[str]) -> ApiError:
    """VM.1010: the VM's state does not allow the operation."""
    return ApiError("VM.1010", f"current state[{vm['state']}] of vm[uuid:{vm['uuid']}] doesn't allow to proceed "
                               f"message[API{action}Msg], allowed states are {allowed}")


def no_host(details: str) -> ApiError:
    """A VM that no host can take: SYS.1002 wrapping the allocator's HOST_ALLOCATION.1000."""
    return ApiError("SYS.1002", f"unable to allocate hosts; {details}",
                    cause=ApiError("HOST_ALLOCATION.1000", details))
