"""Prometheus metrics for ``GET /metrics``: commands, labs by state, step durations, Slack and ZStack calls.

One ``Metrics`` per process with its own registry (tests build their own). Slack calls are counted by an aiohttp
trace on the session both Slack clients share (Bolt copies it into each per-request client); ZStack calls by an
httpx transport wrapper. Labels never carry tokens, user text or lab secrets.
"""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.labs.models import Lab, LabState
from services.labs.notifier import Notice, NoticeKind

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_UUID = re.compile(r"^[0-9a-f]{32}$|^[0-9a-f-]{36}$")
_METHOD = re.compile(r"^[A-Za-z]+(\.[A-Za-z]+)+$")


class Metrics:
    """labbot's counters, gauges and histograms, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.commands = Counter("labbot_commands", "Slack commands and actions handled", ["command", "outcome"],
                                registry=r)
        self.labs = Gauge("labbot_labs", "Labs by lifecycle state", ["state"], registry=r)
        self.step_seconds = Histogram(
            "labbot_step_duration_seconds", "Duration of lab pipeline steps", ["step", "outcome"], registry=r,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
        )
        self.slack_calls = Counter("labbot_slack_api_calls", "Slack Web API calls by method and result",
                                   ["method", "result"], registry=r)
        self.zstack_calls = Counter("labbot_zstack_api_calls", "Lab platform (ZStack) API calls by API and result",
                                    ["api", "result"], registry=r)
        self.ack_seconds = Histogram("labbot_slack_ack_seconds", "Time from request to ack",
                                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=r)

    def command(self, command: str, outcome: str) -> None:
        """Count one command or button click and how it ended (``ok``, ``rejected``, ``error``)."""
        self.commands.labels(command=command, outcome=outcome).inc()

    async def refresh_labs(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Set the labs-by-state gauge from the database (on each scrape)."""
        async with sessions() as session:
            rows = (await session.execute(select(Lab.state, func.count()).group_by(Lab.state))).all()
        counts = {state: count for state, count in rows}
        for state in LabState:
            self.labs.labels(state=state.value).set(counts.get(state.value, 0))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

    def slack_trace(self) -> aiohttp.TraceConfig:
        """An aiohttp trace that counts every Slack Web API call (including rate-limited and failed ones)."""
        trace = aiohttp.TraceConfig()

        async def on_end(_session: aiohttp.ClientSession, _ctx: SimpleNamespace,
                         params: aiohttp.TraceRequestEndParams) -> None:
            method = _slack_method(params.url)
            result = str(params.response.status)
            if params.response.status == 200 and "json" in params.response.headers.get("Content-Type", ""):
                # The body is cached by aiohttp, so reading it here leaves it for slack_sdk.
                try:
                    body: Any = await params.response.json()
                except (aiohttp.ClientError, ValueError):
                    body = {}
                if isinstance(body, dict) and body.get("ok") is False:
                    result = str(body.get("error", "error"))[:40]
            self.slack_calls.labels(method=method, result=result).inc()

        async def on_error(_session: aiohttp.ClientSession, _ctx: SimpleNamespace,
                           params: aiohttp.TraceRequestExceptionParams) -> None:
            self.slack_calls.labels(method=_slack_method(params.url), result=type(params.exception).__name__).inc()

        trace.on_request_end.append(on_end)
        trace.on_request_exception.append(on_error)
        return trace

    def zstack_transport(self, inner: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncBaseTransport:
        """Wrap an httpx transport so every lab-platform call is counted."""
        return _CountingTransport(inner or httpx.AsyncHTTPTransport(), self.zstack_calls)


class MetricsNotifier:
    """A Notifier that observes step durations from the engine's notices."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def notify(self, notice: Notice) -> None:
        """Record the duration of a step that finished or failed."""
        step = notice.step
        if step is None or step.duration_seconds is None:
            return
        if notice.kind == NoticeKind.STEP_FINISHED:
            self.metrics.step_seconds.labels(step=step.name, outcome="done").observe(step.duration_seconds)
        elif notice.kind == NoticeKind.STEP_FAILED:
            self.metrics.step_seconds.labels(step=step.name, outcome="failed").observe(step.duration_seconds)


class _CountingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, counter: Counter) -> None:
        self._inner, self._counter = inner, counter

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        api = _zstack_api(request)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.HTTPError as err:
            self._counter.labels(api=api, result=type(err).__name__).inc()
            raise
        self._counter.labels(api=api, result=str(response.status_code)).inc()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _slack_method(url: Any) -> str:
    last = str(getattr(url, "path", url)).rstrip("/").rsplit("/", 1)[-1]
    return last if _METHOD.match(last) else "response_url"


def _zstack_api(request: httpx.Request) -> str:
    """``POST /zstack/v1/vm-instances`` → ``POST vm-instances``; uuids become ``{uuid}`` to bound the labels."""
    path = request.url.path.split("/v1/", 1)[-1]
    parts = ["{uuid}" if _UUID.match(p) else p for p in path.strip("/").split("/")][:4]
    return f"{request.method} {'/'.join(parts)}"[:80]
