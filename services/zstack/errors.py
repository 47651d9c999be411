"""Typed errors for the ZStack REST API, built from what the management node answered.

    ExternalError (services.errors)
    └── ZStackError                   any failure; carries ZStack's ``code``, ``description``, ``details``
        ├── ZStackAuthError           ID.1000: wrong account name or password
        ├── ZStackSessionError        ID.1001: session unknown or expired (the client logs in again once)
        ├── ZStackNotFoundError       SYS.1003, or an api-job that has expired (HTTP 404)
        ├── ZStackInvalidArgumentError SYS.1007, or a plain-text HTTP 400 from the REST layer
        ├── ZStackOperationError      SYS.1006 and every other error code of a failed API
        │   └── ZStackCapacityError   HOST_ALLOCATION.*: no host has room for the VM
        ├── ZStackAmbiguousError      a lookup by name matched more than one resource
        ├── ZStackTimeoutError        SYS.1001, or our own deadline / the API's apiTimeout passed
        ├── ZStackUnreachableError    the management node could not be reached (after retries)
        └── ZStackAnswerTooLargeError its answer was larger than labbot reads (abandoned past the cap)

Messages never contain the password, its hash or the session uuid: the client scrubs every text it puts
into an error (see ``scrub``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from services.errors import ExternalError
from services.i18n import _

log = logging.getLogger(__name__)

# Codes that say "the management node could not serve this now", as opposed to "this request is wrong".
# The client does not retry API errors; callers may use ``ZStackError.transient`` to decide to.
_TRANSIENT_CODES = frozenset({"SYS.1009", "SYS.1010", "SYS.1011", "SYS.1012"})


class ZStackError(ExternalError):
    """A ZStack API call failed; ``code``/``description``/``details`` are ZStack's ``ErrorCode`` fields."""

    system = "zstack"

    def __init__(
        self,
        code: str,
        description: str = "",
        details: str = "",
        *,
        action: str | None = None,
        http_status: int | None = None,
        cause: ZStackError | None = None,
    ) -> None:
        self.code = code
        self.description = description
        self.details = details
        self.action = action
        self.http_status = http_status
        self.cause = cause
        super().__init__(_compose(code, description, details, action))

    @property
    def transient(self) -> bool:
        """Whether the error says the node was busy or not ready, so the same call may succeed later."""
        return self.code in _TRANSIENT_CODES

    def codes(self) -> list[str]:
        """This error's code followed by the codes of its causes, outermost first."""
        chain: list[str] = []
        error: ZStackError | None = self
        while error is not None:
            chain.append(error.code)
            error = error.cause
        return chain


class ZStackAuthError(ZStackError):
    """Login refused (ID.1000)."""


class ZStackSessionError(ZStackError):
    """The session is unknown or expired (ID.1001)."""


class ZStackNotFoundError(ZStackError):
    """A resource (SYS.1003) or an async job (HTTP 404) does not exist."""


class ZStackInvalidArgumentError(ZStackError):
    """ZStack refused the arguments (SYS.1007) or the REST layer refused the request (HTTP 400)."""


class ZStackOperationError(ZStackError):
    """The API was accepted but failed (SYS.1006 and any other error code)."""


class ZStackCapacityError(ZStackOperationError):
    """Host allocation failed (HOST_ALLOCATION.*): no host has the CPU or memory the VM needs."""


class ZStackAmbiguousError(ZStackError):
    """A lookup by name found several resources, so labbot cannot tell which one is meant."""


class ZStackTimeoutError(ZStackError):
    """The job did not finish in time (SYS.1001 from ZStack, or our deadline); ``job_uuid`` may still finish."""

    def __init__(self, code: str, description: str = "", details: str = "", *, job_uuid: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(code, description, details, **kwargs)
        self.job_uuid = job_uuid


class ZStackUnreachableError(ZStackError):
    """The management node did not answer (connection refused, reset, timed out) after retries."""


class ZStackAnswerTooLargeError(ZStackError):
    """The answer was larger than labbot reads; it was abandoned past the cap, not retried."""


_BY_CODE: dict[str, type[ZStackError]] = {
    "ID.1000": ZStackAuthError,
    "ID.1001": ZStackSessionError,
    "SYS.1001": ZStackTimeoutError,
    "SYS.1003": ZStackNotFoundError,
    "SYS.1007": ZStackInvalidArgumentError,
}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each non-empty secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def error_from_body(
    error: Mapping[str, Any],
    *,
    action: str | None = None,
    http_status: int | None = None,
    secrets: Iterable[str] = (),
) -> ZStackError:
    """Build the typed error for one ZStack ``ErrorCode`` JSON object (``{"code", "description", ...}``).

    The class comes from the code; a HOST_ALLOCATION code anywhere in the ``cause`` chain makes it a
    ZStackCapacityError, since ZStack wraps the allocator's error in a generic one.
    """
    secrets = tuple(secrets)
    cause_body = error.get("cause")
    cause = (
        error_from_body(cause_body, action=action, http_status=http_status, secrets=secrets)
        if isinstance(cause_body, Mapping)
        else None
    )
    code = str(error.get("code") or "SYS.1000")
    description = scrub(str(error.get("description") or ""), secrets)
    details = scrub(str(error.get("details") or ""), secrets)
    cls = _BY_CODE.get(code, ZStackOperationError)
    chain = [code, *(cause.codes() if cause else [])]
    if any(c.startswith("HOST_ALLOCATION.") for c in chain):
        cls = ZStackCapacityError
    return cls(code, description, details, action=action, http_status=http_status, cause=cause)


def error_from_text(status: int, text: str, *, action: str | None, secrets: Iterable[str] = ()) -> ZStackError:
    """Build the typed error for a plain-text (non-JSON) answer of the REST layer (400, 404, 405, 500)."""
    details = scrub(text.strip()[:500], secrets)
    code = f"HTTP.{status}"
    if status == 400:
        return ZStackInvalidArgumentError(code, _("the REST server refused the request"), details,
                                          action=action, http_status=status)
    if status == 404:
        return ZStackNotFoundError(code, _("not found"), details, action=action, http_status=status)
    return ZStackError(
        code, _("unexpected HTTP status {status}").format(status=status), details, action=action, http_status=status
    )


def _compose(code: str, description: str, details: str, action: str | None) -> str:
    where = _("ZStack {action} failed").format(action=action) if action else _("ZStack call failed")
    text = f"{where}: {description or code}"
    if details and details != description:
        text += f": {details}"
    return f"{text} [{code}]"
