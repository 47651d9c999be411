"""A faulty network between labbot and the fake Slack: 429 storms, slow answers and answers lost after Slack
acted (the request reached Slack, the response never came back, as on a timeout).

labbot's ``SLACK_API_URL`` points at the proxy; everything else is forwarded unchanged to tests/fakes/slack_api.py,
which keeps the truth (messages posted, calls made, its own rate limits).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web


@dataclass
class SlackFaults:
    """What goes wrong, per Web API method.

    * ``storm_until``: until this monotonic time, ``storm_methods`` get 429 with ``Retry-After: storm_retry``
      without reaching Slack.
    * ``lose``: method → how many of its next answers are lost *after* Slack handled the request.
    * ``delay``: method → seconds every answer is held back (slower than usual, under the client's timeout).
    """

    storm_until: float = 0.0
    storm_methods: frozenset[str] = frozenset({"chat.postMessage", "chat.update"})
    storm_retry: int = 1
    lose: dict[str, int] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    storm_answers: int = 0
    lost: int = 0

    def storm(self, seconds: float) -> None:
        self.storm_until = time.monotonic() + seconds


class SlackProxy:
    """An HTTP proxy on 127.0.0.1 in front of the fake Slack's Web API."""

    def __init__(self, upstream_api_url: str) -> None:
        self.upstream = upstream_api_url.rstrip("/")
        self.faults = SlackFaults()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    async def __aenter__(self) -> SlackProxy:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._client = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        faults = self.faults
        if method in faults.storm_methods and time.monotonic() < faults.storm_until:
            faults.storm_answers += 1
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(faults.storm_retry)})
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with self._client.request(request.method, f"{self.upstream}/{method}", params=request.query,
                                        data=await request.read(), headers=headers) as upstream:
            body = await upstream.read()
            status, extra = upstream.status, {k: v for k, v in upstream.headers.items() if k.lower() == "retry-after"}
        if faults.lose.get(method, 0) > 0:
            faults.lose[method] -= 1
            faults.lost += 1
            # Slack did the work; the answer is lost on the way back (the client sees the connection drop).
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("answer lost (injected)")
        await asyncio.sleep(faults.delay.get(method, 0.0))
        return web.Response(body=body, status=status, headers={**extra, "Content-Type": "application/json"})
