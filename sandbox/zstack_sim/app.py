"""The simulator's ASGI app: ZStack's REST layer (zstack-api.md §16) in front of the handlers.

Per request: route by method and path under ``/zstack/v1`` (PUT actions by body key), check Authorization,
build the parameters (JSON body key, path variables, query string), then answer a sync API at once (200 or
503) or accept an async one (202 with ``location`` and ``apiTimeout``) and run it as a job that
``/api-jobs/<uuid>`` reports. Faults (``Faults``) are applied here, around the handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.types import Receive, Scope, Send

from sandbox.zstack_sim import (
    api_compute,
    api_config,
    api_identity,
    api_images,
    api_infra,
    api_network,
    api_storage,
    api_volume,
)
from sandbox.zstack_sim.context import HANDLERS, Ctx, Timing
from sandbox.zstack_sim.errors import ApiError, RestError
from sandbox.zstack_sim.faults import Faults
from sandbox.zstack_sim.hooks import NestedHooks, NoHooks, OuterHooks
from sandbox.zstack_sim.params import build_params
from sandbox.zstack_sim.seed import OuterSeed, seed_install, seed_outer
from sandbox.zstack_sim.store import Job, SimState, new_uuid
from sandbox.zstack_sim.views import strip_nulls
from services.zstack.routes import ROUTES, Route

log = logging.getLogger(__name__)

_HANDLER_MODULES = (api_compute, api_config, api_identity, api_images, api_infra, api_network, api_storage, api_volume)
PREFIX = "/zstack/v1"
_JOB_UUID = re.compile(r"^[0-9a-zA-Z]{32}$")
_NO_FAULTS = frozenset({"LogInByAccount", "LogOut", "ValidateSession", "GetVersion", "GetCurrentTime", "IsReadyToGo"})


class DroppedConnection(Exception):
    """Raised after the response has started, so the server closes the connection without an answer."""


class _DropResponse(Response):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
        raise DroppedConnection("fault injection: connection dropped")


@dataclass
class Simulator:
    """One simulated management node: its state, hooks, timing, faults and running jobs."""

    state: SimState
    outer_hooks: OuterHooks
    nested_hooks: NestedHooks
    timing: Timing
    faults: Faults
    public_base_url: str | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _routes: list[tuple[re.Pattern[str], Route, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        missing = sorted(set(ROUTES) - set(HANDLERS))
        if missing:
            raise RuntimeError(f"the simulator has no handler for {missing}")
        entries = [(r.path, r, False) for r in ROUTES.values()] + [
            (r.get_path, r, True) for r in ROUTES.values() if r.get_path
        ]
        # Literal paths win over templated ones (``/l3-networks/ip-ranges`` before ``/l3-networks/{uuid}``).
        entries.sort(key=lambda e: e[0].count("{"))
        for template, api, is_get in entries:
            pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
            self._routes.append((re.compile(pattern), api, is_get))

    async def handle(self, request: Request) -> Response:
        """Answer one HTTP request (with any drop fault applied around it)."""
        drop = self.faults.roll_drop(request.method)
        if drop == "before":
            return _DropResponse()
        try:
            response = await self._dispatch(request)
        except RestError as err:
            response = PlainTextResponse(err.text, status_code=err.status)
        return _DropResponse() if drop == "after" else response

    async def _dispatch(self, request: Request) -> Response:
        path = request.url.path
        if not path.startswith(PREFIX + "/"):
            raise RestError(404, f"no api mapping to {path}")
        sub = path[len(PREFIX):]
        if sub.startswith("/api-jobs/"):
            return await self._job_status(request, sub.removeprefix("/api-jobs/"))
        body = await _json_body(request)
        api, path_vars, is_get = self._match(request.method, sub, body)
        job_uuid = request.headers.get("X-Job-UUID")
        if job_uuid is not None and not _JOB_UUID.match(job_uuid):
            raise RestError(400, "Invalid header[X-Job-UUID], it must be a UUID with '-' stripped")
        error = self._auth_error(api, request.headers.get("Authorization"))
        params, tags, query = build_params(api, body, path_vars, request.query_params.multi_items())
        if is_get:
            query["q"] = [*query.get("q", []), f"uuid={path_vars['uuid']}"]
        if error is None and api.mutating and api.action not in _NO_FAULTS and self.faults.roll_failure(request.method):
            error = ApiError("SYS.1006", "simulated fault: the operation failed before it changed anything")
        ctx = Ctx(self.state, api, params, tags["systemTags"], tags["userTags"], self.outer_hooks, self.nested_hooks,
                  self.timing, query=query, account_uuid=self._caller(request.headers.get("Authorization")))
        if not api.need_poll:
            return await self._run_sync(ctx, error)
        job_uuid = job_uuid or new_uuid()
        if job_uuid in self.state.jobs:
            raise RestError(400, f"Duplicate job uuid[{job_uuid}]")
        return self._accept(request, ctx, job_uuid, error, request.headers.get("X-API-Timeout"))

    def _match(self, method: str, sub: str, body: dict[str, Any]) -> tuple[Route, dict[str, str], bool]:
        on_path = [(m, api, is_get) for pattern, api, is_get in self._routes if (m := pattern.match(sub))]
        if not on_path:
            raise RestError(404, f"no api mapping to /v1{sub}")
        same_method = [(m, api, is_get) for m, api, is_get in on_path if api.method == method]
        if not same_method:
            raise RestError(405, f"the method[{method}] is not allowed for /v1{sub}")
        if method == "PUT":
            keyed = [c for c in same_method if c[1].body_key in body]
            if not keyed:
                raise RestError(400, f"the body doesn't contain action mapping to the URL[/v1{sub}]")
            same_method = keyed
        match, api, is_get = same_method[0]
        return api, match.groupdict(), is_get

    def _caller(self, header: str | None) -> str | None:
        """The account of the request's live session (what ``msg.getSession().getAccountUuid()`` gives)."""
        if header is None or not header.startswith("OAuth"):
            return None
        session = self.state.live_session(header[len("OAuth"):].strip())
        return session.account_uuid if session is not None else None

    def _auth_error(self, api: Route, header: str | None) -> ApiError | None:
        if not api.need_session:
            return None
        if header is None:
            raise RestError(400, "missing header 'Authorization'")
        if header.startswith("ZStack"):
            if not re.fullmatch(r"ZStack \S+:\S+", header):
                raise RestError(400, "accessKey format is 'ZStack AccessKeyId:Signature'")
            return ApiError("ID.1000", "AccessKey authentication is not supported by this simulator")
        if not header.startswith("OAuth"):
            raise RestError(400, "Authorization type must be 'OAuth'")
        session_uuid = header[len("OAuth"):].strip()
        if not session_uuid:
            return ApiError("ID.1001", "session uuid is null")
        if self.state.live_session(session_uuid) is None:
            return ApiError("ID.1001", "Session expired")
        return None

    async def _run_sync(self, ctx: Ctx, error: ApiError | None) -> Response:
        delay = self.timing.seconds(ctx.action, sync=True)
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            if error is not None:
                raise error
            self.state.calls[ctx.action] = self.state.calls.get(ctx.action, 0) + 1
            result = await HANDLERS[ctx.action](ctx)
        except ApiError as err:
            return JSONResponse({"error": err.body()}, status_code=503)
        return JSONResponse(strip_nulls(result))

    def _accept(self, request: Request, ctx: Ctx, job_uuid: str, error: ApiError | None,
                timeout_header: str | None) -> Response:
        timeout_ms = self.timing.api_timeout_ms(ctx.action)
        if timeout_header and timeout_header.isdigit():
            timeout_ms = int(timeout_header) * 1000
        job = Job(job_uuid, ctx.action, time.monotonic())
        self.state.jobs[job_uuid] = job
        ctx.job_uuid = job_uuid
        task = asyncio.create_task(self._run_job(job, ctx, error, timeout_ms / 1000), name=f"zstack-sim-{job_uuid}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        base = self.public_base_url or f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse({"location": f"{base}{PREFIX}/api-jobs/{job_uuid}", "apiTimeout": timeout_ms},
                            status_code=202)

    async def _run_job(self, job: Job, ctx: Ctx, error: ApiError | None, limit: float) -> None:
        try:
            if error is not None:
                raise error
            self.state.calls[ctx.action] = self.state.calls.get(ctx.action, 0) + 1
            async with asyncio.timeout(limit):
                result = await HANDLERS[ctx.action](ctx)
            job.status, job.body = 200, strip_nulls(result)
        except ApiError as err:
            job.status, job.body = 503, {"error": err.body()}
        except TimeoutError:
            job.status, job.body = 503, {"error": ApiError("SYS.1001", f"API[{ctx.action}] timeout after "
                                                                       f"{limit:.0f}s").body()}
        except RestError as err:
            job.status, job.body = 503, {"error": ApiError("SYS.1007", err.text).body()}
        except Exception as err:  # a bug in a handler or hook must still end the job, as ZStack's would
            log.exception("simulator job %s (%s) crashed", job.uuid, ctx.action)
            job.status, job.body = 503, {"error": ApiError("SYS.1000", f"{type(err).__name__}: {err}").body()}
        job.finished_at = time.monotonic()

    async def _job_status(self, request: Request, job_uuid: str) -> Response:
        if request.method != "GET":
            raise RestError(405, "only GET method is allowed for querying job status")
        self.state.forget_old_jobs()
        job = self.state.jobs.get(job_uuid.strip("/"))
        if job is None:
            raise RestError(404, "the job has been expired")
        if self.faults.slow_poll > 0:
            await asyncio.sleep(self.faults.slow_poll)
        job.polls += 1
        if job.status is None:
            return JSONResponse({}, status_code=202)
        job.polls_after_done += 1
        if job.result_seen_at is None:
            job.result_seen_at = time.monotonic()
        return JSONResponse(job.body, status_code=job.status)

    async def shutdown(self) -> None:
        """Cancel running jobs (the node is going away)."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _json_body(request: Request) -> dict[str, Any]:
    if request.method not in ("POST", "PUT"):
        return {}
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise RestError(400, "the body is not a valid JSON") from None
    if not isinstance(body, dict):
        raise RestError(400, "the body must be a JSON object")
    return body


def create_app(
    role: Literal["outer", "nested"],
    *,
    hooks: object | None = None,
    latency_scale: float = 0.0,
    faults: Faults | None = None,
    seed_profiles_dir: Path | None = None,
    public_base_url: str | None = None,
    durations: dict[str, float] | None = None,
    api_timeouts_ms: dict[str, int] | None = None,
    outer_seed: OuterSeed | None = None,
    session_timeout: float = 7200.0,
    admin_password: str = "password",  # noqa: S107 - ZStack's initial admin password, what a fresh install accepts
) -> Starlette:
    """The simulator as a Starlette app; ``app.state.sim`` is its ``Simulator`` (state, faults, timing).

    ``hooks`` may implement ``OuterHooks``, ``NestedHooks`` or both; what it lacks is ``NoHooks``'.
    ``durations`` replace nominal seconds per action (then times ``latency_scale``); ``api_timeouts_ms``
    replace the apiTimeout announced (and enforced) per action.
    """
    if role not in ("outer", "nested"):
        raise ValueError(f"role must be 'outer' or 'nested', got {role!r}")
    state = SimState(role, session_timeout=session_timeout)
    seed_install(state, admin_password=admin_password)
    if role == "outer":
        seed_outer(state, profiles_dir=seed_profiles_dir, seed=outer_seed)
    fallback = NoHooks()
    sim = Simulator(
        state=state,
        outer_hooks=hooks if hooks is not None and hasattr(hooks, "vm_started") else fallback,  # type: ignore[arg-type]
        nested_hooks=hooks if hooks is not None and hasattr(hooks, "discover_iscsi") else fallback,  # type: ignore[arg-type]
        timing=Timing(latency_scale, dict(durations or {}), dict(api_timeouts_ms or {})),
        faults=faults or Faults(),
        public_base_url=public_base_url.rstrip("/") if public_base_url else None,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await sim.shutdown()

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    app = Starlette(routes=[StarletteRoute("/{path:path}", sim.handle, methods=methods)], lifespan=lifespan)
    app.state.sim = sim
    return app
