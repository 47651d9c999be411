"""The HTTP layer under the ZStack client: one ``httpx.AsyncClient``, transport retries, JSON helpers.

A request that fails in transport (refused, reset, read timeout, a proxy's 502/504 or a 503 that is not a
ZStack error body) is sent again, unchanged, after a backoff. "Unchanged" matters: the headers include the
request's ``X-Job-UUID``, which is what lets ZStack recognise a re-sent job instead of running it twice.

A nested ZStack runs on a VM whose owner has root, so its answers are bounded like any untrusted input: each
attempt has one overall deadline for sending, headers and the whole body (an answer dripped a byte at a time
cannot stretch it; httpx's own timeouts are per read), and the body is read as a stream and abandoned past
``max_answer_bytes`` (counted after decompression) with ``ZStackAnswerTooLargeError``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
import time
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from services.zstack.errors import (
    ZStackAnswerTooLargeError,
    ZStackError,
    ZStackTimeoutError,
    ZStackUnreachableError,
)
from services.zstack.polling import RetryPolicy

log = logging.getLogger(__name__)

SESSION_IN_PATH = re.compile(r"(/accounts/sessions/)[0-9a-fA-F]{32}")

# The largest answer read. A page of 1,000 VM inventories (the query page size) is a few MiB.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# Headers that described the body on the wire; the kept body is already decoded and complete.
_WIRE_BODY_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


class _RedactSessionPaths(logging.Filter):
    """httpx logs every request URL at INFO; LogOut and ValidateSession carry the session uuid in theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask session uuids in the record's arguments; never drop the record."""
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                SESSION_IN_PATH.sub(r"\1***", str(a)) if "/accounts/sessions/" in str(a) else a
                for a in record.args
            )
        return True


if not any(isinstance(f, _RedactSessionPaths) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_RedactSessionPaths())


def new_uuid() -> str:
    """A ZStack-style uuid: uuid4 hex without dashes (what ``resourceUuid`` and ``X-Job-UUID`` require)."""
    return uuidlib.uuid4().hex


def deadline_in(seconds: float) -> float:
    """The absolute deadline ``seconds`` from now, for the ``deadline=`` arguments."""
    return time.monotonic() + seconds


def safe_path(path: str) -> str:
    """``path`` with any session uuid in it masked, fit for logs and error messages."""
    return SESSION_IN_PATH.sub(r"\1***", path)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default trust store, loaded once per process: loading it costs about 20 ms of CPU, and labbot
    opens a client per management node it talks to (the platform's, and each lab's nested one, per step)."""
    return httpx.create_ssl_context()


@dataclass
class CallStats:
    """Counters of what the client did on the wire (for tests, benchmarks and the health view)."""

    requests: int = 0
    polls: int = 0
    transport_retries: int = 0
    duplicate_job_recoveries: int = 0
    relogins: int = 0
    logins: int = 0


class Wire:
    """One management node's HTTP connection pool, with transport retries bounded by a deadline."""

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None, timeout: float,
                 retry: RetryPolicy, stats: CallStats, max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self._retry = retry
        self._stats = stats
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            verify=_tls_context(),
            timeout=timeout,
            headers={"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"},
        )

    async def aclose(self) -> None:
        """Close every connection."""
        await self._http.aclose()

    async def send(self, method: str, path: str, *, action: str, headers: Mapping[str, str],
                   json_body: dict[str, Any] | None, params: list[tuple[str, str]],
                   deadline: float | None, retry: RetryPolicy | None = None) -> tuple[httpx.Response, bool]:
        """Send one request, re-sending it after transport failures; returns the answer and whether it was
        re-sent (a re-sent mutating request may already have been accepted the first time)."""
        retry_delays = (retry or self._retry).delays()
        resent = False
        while True:
            timeout = self.timeout
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    raise ZStackTimeoutError("sdk.1001", "deadline passed", f"{method} {safe_path(path)} not sent",
                                             action=action)
            self._stats.requests += 1
            request = self._http.build_request(method, path, headers=dict(headers), json=json_body,
                                               params=tuple(params) if params else None, timeout=timeout)
            try:
                async with asyncio.timeout(timeout):
                    response = await self._exchange(request, action=action)
            except TimeoutError:
                problem = f"no complete answer within {timeout:.3g}s"
            except httpx.TransportError as err:
                problem = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            else:
                if not _looks_transient(response):
                    return response, resent
                problem = f"HTTP {response.status_code} without a ZStack answer"
            delay = next(retry_delays, None)
            if delay is not None and deadline is not None and time.monotonic() + delay >= deadline:
                # Out of time rather than out of attempts: the caller's deadline is what ended it.
                raise ZStackTimeoutError("sdk.1001", "deadline passed",
                                         f"{method} {safe_path(path)} unanswered: {safe_path(problem)}", action=action)
            if delay is None:
                raise ZStackUnreachableError(
                    "CLIENT.UNREACHABLE", f"no answer from {self.base_url}",
                    f"{method} {safe_path(path)}: {safe_path(problem)}", action=action,
                )
            self._stats.transport_retries += 1
            log.warning("ZStack %s: %s; retrying in %.1fs", action, safe_path(problem), delay)
            await asyncio.sleep(delay)
            resent = True

    async def _exchange(self, request: httpx.Request, *, action: str) -> httpx.Response:
        """Send ``request`` and read its answer as a stream, at most ``max_answer_bytes`` of (decoded) body."""
        response = await self._http.send(request, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_answer_bytes:
                raise self._too_large(request, action, f"it announced {int(declared):,} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_answer_bytes:
                    raise self._too_large(request, action, f"more than {self.max_answer_bytes:,} bytes arrived")
        finally:
            await response.aclose()
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _WIRE_BODY_HEADERS]
        return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=request,
                              extensions=response.extensions)

    def _too_large(self, request: httpx.Request, action: str, what: str) -> ZStackAnswerTooLargeError:
        log.warning("ZStack %s: answer from %s abandoned: %s (limit %d)", action, self.base_url, what,
                    self.max_answer_bytes)
        return ZStackAnswerTooLargeError(
            "CLIENT.ANSWER_TOO_LARGE", f"answer larger than {self.max_answer_bytes:,} bytes",
            f"{request.method} {safe_path(request.url.path)}: {what}; labbot stopped reading it", action=action,
        )


def _looks_transient(response: httpx.Response) -> bool:
    if response.status_code in (502, 504):
        return True
    # ZStack's own 503 always carries {"error": ...}; a bare 503 comes from something in between.
    return response.status_code == 503 and "error" not in json_object(response, strict=False)


def json_object(response: httpx.Response, *, strict: bool = True) -> dict[str, Any]:
    """The answer's JSON object (``{}`` for an empty body); a non-JSON 200/202/503 raises when ``strict``."""
    if not response.content:
        return {}
    try:
        data = response.json()
    except ValueError:
        if strict and response.status_code in (200, 202, 503):
            raise ZStackError("sdk.1000", f"HTTP {response.status_code} with a body that is not JSON",
                              response.text[:200]) from None
        return {}
    return data if isinstance(data, dict) else {"value": data}


def job_from_location(location: str) -> str | None:
    """The job uuid at the end of a 202's ``location``.

    The SDK rewrites the location's host to the configured one; we only take the uuid and poll it on our own
    base URL, since through an SSH tunnel the node's own address may not be reachable.
    """
    _, sep, rest = location.partition("/api-jobs/")
    job = rest.split("/")[0].split("?")[0]
    return job if sep and re.fullmatch(r"[0-9a-zA-Z]{32}", job) else None


def query_pairs(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """GET/DELETE parameters as query-string pairs: lists repeat the key, maps become ``key.sub=value``."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple | set):
            pairs.extend((key, _scalar(item)) for item in value)
        elif isinstance(value, Mapping):
            pairs.extend((f"{key}.{k}", _scalar(v)) for k, v in value.items())
        else:
            pairs.append((key, _scalar(value)))
    return pairs


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
