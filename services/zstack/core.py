"""The ZStack REST client core: the session, calls and async jobs of one management node.

How a call goes (zstack-api.md §2-§7):

* Every route that needs a session sends ``Authorization: OAuth <session>``; the session comes from
  ``LogInByAccount`` with the password's SHA-512 hex, lazily on first use. ``ID.1001`` (expired) makes the
  client log in again once and repeat the call.
* Every mutating request carries its own ``X-Job-UUID``. If the connection fails before the answer arrives,
  the request is sent again with the *same* job uuid: either the server never saw it (it runs now), or
  it answers ``400 Duplicate job uuid`` and the client polls that job for the original result. So a retry
  never runs an API twice.
* Async APIs answer 202 with a location; the client polls ``/api-jobs/<uuid>`` on ``PollPolicy`` until 200
  (result) or 503 (error), never past the job's ``apiTimeout`` or the caller's deadline.
* Transport failures are retried with backoff (``wire.Wire``); API errors are not: they become typed
  ``ZStackError``s.

Deadlines are absolute ``time.monotonic()`` values (see ``deadline_in``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import SecretStr

from services.zstack.errors import (
    ZStackError,
    ZStackSessionError,
    ZStackTimeoutError,
    ZStackUnreachableError,
    error_from_body,
    error_from_text,
)
from services.zstack.polling import PollPolicy, RetryPolicy
from services.zstack.routes import API_JOBS_PATH, Route, route
from services.zstack.wire import CallStats, Wire, deadline_in, job_from_location, json_object, new_uuid, query_pairs

log = logging.getLogger(__name__)

_DEFAULT_JOB_TIMEOUT = 3 * 3600.0  # the SDK's polling timeout, when neither apiTimeout nor a deadline is known
_FINAL_POLL_MARGIN = 0.05  # seconds left for the round trip of the poll made just before a limit
_DUPLICATE_JOB = re.compile(r"Duplicate job uuid\[([0-9a-f]{32})\]")


class ZStackCore:
    """Session handling, the request/poll loop and queries; ``ZStackClient`` adds typed methods on top."""

    def __init__(
        self,
        base_url: str,
        account: str,
        password: SecretStr,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30,
        poll_cap: float = 5.0,
        poll_policy: PollPolicy | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL ending in /zstack/v1")
        self.base_url = base_url.rstrip("/")
        self.account = account
        self._password = password
        self._timeout = timeout
        self._poll = poll_policy or PollPolicy(cap=poll_cap)
        self.stats = CallStats()
        self._wire = Wire(self.base_url, transport=transport, timeout=timeout, retry=retry_policy or RetryPolicy(),
                          stats=self.stats)
        self._session: SecretStr | None = None
        self.account_uuid: str | None = None  # the logged-in account (LogInByAccount's session inventory)
        self._login_lock = asyncio.Lock()

    @property
    def poll_policy(self) -> PollPolicy:
        """How long to wait between polls of a job or a state (the typed areas poll VM states with it)."""
        return self._poll

    # --- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Log out (best effort, a few seconds at most) and close the HTTP connections."""
        session, self._session = self._session, None
        if session is not None:
            try:
                await self._request(route("LogOut"), {}, {"sessionUuid": session.get_secret_value()},
                                    deadline=deadline_in(min(self._timeout, 5.0)), session=None,
                                    extra_secrets=(session.get_secret_value(),))
            except ZStackError as err:
                log.warning("ZStack logout from %s failed: %s", self.base_url, err)
        await self._wire.aclose()

    # --- session ---------------------------------------------------------------------------------

    async def login(self) -> None:
        """Log in with ``LogInByAccount`` (password sent as lower-case SHA-512 hex) and keep the session."""
        async with self._login_lock:
            await self._login_locked()

    async def _login_locked(self, deadline: float | None = None) -> None:
        digest = hashlib.sha512(self._password.get_secret_value().encode()).hexdigest()
        body = {"accountName": self.account, "password": digest}
        # A login made for a call spends that call's time: it ends by the call's deadline, if that comes first.
        until = deadline_in(self._timeout) if deadline is None else min(deadline, deadline_in(self._timeout))
        result = await self._request(route("LogInByAccount"), body, {}, deadline=until,
                                     session=None, extra_secrets=(digest,))
        session_uuid = str((result.get("inventory") or {}).get("uuid") or "")
        if not session_uuid:
            raise ZStackError("sdk.1002", "login answered without a session", action="LogInByAccount")
        self._session = SecretStr(session_uuid)
        self.account_uuid = str((result.get("inventory") or {}).get("accountUuid") or "") or None
        self.stats.logins += 1
        log.info("logged in to ZStack %s as %s", self.base_url, self.account)

    async def _current_session(self, deadline: float | None = None) -> str:
        if self._session is None:
            async with self._login_lock:
                if self._session is None:
                    await self._login_locked(deadline)
        assert self._session is not None
        return self._session.get_secret_value()

    async def _renew_session(self, stale: str, deadline: float | None = None) -> None:
        async with self._login_lock:
            # Several calls may see the same expiry at once; only the first one logs in again.
            if self._session is not None and self._session.get_secret_value() != stale:
                return
            self._session = None
            self.stats.relogins += 1
            log.info("ZStack session on %s expired; logging in again", self.base_url)
            await self._login_locked(deadline)

    # --- calls -----------------------------------------------------------------------------------

    async def call(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        system_tags: Sequence[str] | None = None,
        user_tags: Sequence[str] | None = None,
        path_params: Mapping[str, str] | None = None,
        deadline: float | None = None,
        secrets: Sequence[SecretStr] = (),
    ) -> dict[str, Any]:
        """Call any declared API and return its result body (``{"inventory": ...}``, ``{}`` ...).

        Path ``{vars}`` come from ``path_params``, or from ``params`` keys of the same name. ``secrets`` are
        values to keep out of error messages, besides the password, the session and any ``*password*`` param.
        """
        api = route(action)
        given = params or {}
        path_values = {k: str(v) for k, v in given.items() if k in api.path_vars} | dict(path_params or {})
        body = {k: v for k, v in given.items() if k not in api.path_vars and v is not None}
        tags = {"systemTags": list(system_tags or []), "userTags": list(user_tags or [])}
        extra = tuple(s.get_secret_value() for s in secrets) + tuple(
            str(v) for k, v in body.items() if "password" in k.lower() and isinstance(v, str)
        )
        for attempt in (1, 2):
            session = await self._current_session(deadline) if api.need_session else None
            try:
                return await self._request(api, body, path_values, deadline=deadline, session=session, tags=tags,
                                           extra_secrets=extra)
            except ZStackSessionError:
                if attempt == 2 or session is None:
                    raise
                await self._renew_session(session, deadline)
        raise AssertionError("unreachable")

    # --- one request and its job -------------------------------------------------------------------

    async def _request(
        self,
        api: Route,
        body: Mapping[str, Any],
        path_values: Mapping[str, str],
        *,
        deadline: float | None,
        session: str | None,
        tags: Mapping[str, list[str]] | None = None,
        query_params: list[tuple[str, str]] | None = None,
        extra_secrets: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        secrets = (*extra_secrets, *(s for s in [session, self._password.get_secret_value()] if s))
        headers: dict[str, str] = {}
        if session is not None:
            headers["Authorization"] = f"OAuth {session}"
        job_uuid = new_uuid() if api.mutating else None
        if job_uuid:
            headers["X-Job-UUID"] = job_uuid
        json_body: dict[str, Any] | None = None
        params = list(query_params or [])
        if api.body_key is not None:
            json_body = {api.body_key: dict(body)}
            json_body.update({key: values for key, values in (tags or {}).items() if values})
        else:
            params.extend(query_pairs(body))
        response, resent = await self._wire.send(api.method, api.render_path(dict(path_values)), action=api.action,
                                                 headers=headers, json_body=json_body, params=params,
                                                 deadline=deadline)
        status = response.status_code
        if status == 200:
            return json_object(response)
        if status == 503:
            raise error_from_body(json_object(response).get("error") or {}, action=api.action, http_status=503,
                                  secrets=secrets)
        if status == 202 and api.need_poll:
            accepted = json_object(response)
            timeout_ms = accepted.get("apiTimeout")
            api_timeout = float(timeout_ms) / 1000 if isinstance(timeout_ms, int | float) and timeout_ms > 0 else None
            polled = job_from_location(str(accepted.get("location") or "")) or job_uuid or ""
            return await self._poll_job(polled, action=api.action, api_timeout=api_timeout, deadline=deadline,
                                        secrets=secrets)
        if status == 400 and resent and job_uuid and _DUPLICATE_JOB.search(response.text):
            # The first attempt reached the server before the connection broke: fetch that job's result.
            self.stats.duplicate_job_recoveries += 1
            log.info("ZStack %s: job %s was already accepted; polling it instead of re-sending", api.action, job_uuid)
            return await self._poll_job(job_uuid, action=api.action, api_timeout=None, deadline=deadline,
                                        secrets=secrets)
        raise error_from_text(status, response.text, action=api.action, secrets=secrets)

    async def _poll_job(self, job_uuid: str, *, action: str, api_timeout: float | None, deadline: float | None,
                        secrets: Sequence[str]) -> dict[str, Any]:
        started = time.monotonic()
        until = started + (api_timeout if api_timeout is not None else _DEFAULT_JOB_TIMEOUT)
        if deadline is not None:
            until = min(until, deadline)
        polls = 0
        for delay in self._poll.delays():
            remaining = until - time.monotonic()
            last = delay >= remaining - _FINAL_POLL_MARGIN
            # The last poll goes out just before the limit, so that its answer can still arrive in time.
            await asyncio.sleep(max(0.0, remaining - _FINAL_POLL_MARGIN) if last else delay)
            try:
                response, _ = await self._wire.send("GET", f"{API_JOBS_PATH}/{job_uuid}", action=action, headers={},
                                                    json_body=None, params=[], deadline=until)
            except (ZStackTimeoutError, ZStackUnreachableError) as err:
                if time.monotonic() < until - _FINAL_POLL_MARGIN:
                    raise
                raise _job_timeout(job_uuid, action, started, polls) from err
            polls += 1
            self.stats.polls += 1
            if response.status_code == 200:
                log.debug("ZStack %s job %s done after %d polls, %.2fs", action, job_uuid, polls,
                          time.monotonic() - started)
                return json_object(response)
            if response.status_code == 503:
                raise error_from_body(json_object(response).get("error") or {}, action=action, http_status=503,
                                      secrets=secrets)
            if response.status_code != 202:
                raise error_from_text(response.status_code, response.text, action=action, secrets=secrets)
            if last:
                break
        raise _job_timeout(job_uuid, action, started, polls)


def _job_timeout(job_uuid: str, action: str, started: float, polls: int) -> ZStackTimeoutError:
    return ZStackTimeoutError(
        "sdk.1001", "polling timeout",
        f"job {job_uuid} did not finish within {time.monotonic() - started:.1f}s ({polls} polls)",
        action=action, job_uuid=job_uuid,
    )
