"""Slack ack latency and Web API calls per lab: ``python -m benchmarks.slack_ack``.

1. p50/p99 ack latency of 200 concurrent signed ``/lab list`` commands over HTTP to labbot (whose listener acks,
   then queries the database and answers through the response_url in the background), side by side with a bare
   Bolt AsyncApp that only acks, both on uvicorn on loopback, measured in alternating rounds in one run.
   Target: labbot's p99 within 1.5x the bare app's, far under Slack's 3 s.
2. Slack Web API calls for one lab lifecycle (create, build with hundreds of progress events, destroy from the
   card's button) against the fake Slack at Slack's real rate limits. Target: at most 15.

Results are printed and written to this benchmark's section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.blocks.ids import LabAction, LabRef, encode
from bot.slack.pacing import SlackPacer
from services import db
from tests.slack import payloads
from tests.slack.harness import Harness, running_bot
from tests.slack.world import BOT_TOKEN, SIGNING_SECRET

log = logging.getLogger(__name__)

CONCURRENT = 200
ROUNDS = 3
RESULTS = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- slack_ack:start -->", "<!-- slack_ack:end -->"


async def serve(app: Starlette) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    """Run ``app`` on uvicorn on 127.0.0.1 (a free port)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning",
                                           access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}"


def bare_app(api_url: str) -> Starlette:
    """A Bolt AsyncApp that only acks ``/lab``, behind the same Starlette adapter."""
    app = AsyncApp(client=AsyncWebClient(token=BOT_TOKEN, base_url=api_url), signing_secret=SIGNING_SECRET)

    @app.command("/lab")
    async def ack_only(ack) -> None:  # type: ignore[no-untyped-def]
        await ack()

    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"])])


async def burst(http: httpx.AsyncClient, url: str, hook: str) -> list[float]:
    """Send CONCURRENT signed commands at once; return each one's latency in seconds."""
    bodies = [payloads.slash_command("list", response_url=hook, user=f"U{i:04d}") for i in range(CONCURRENT)]

    async def one(body: str) -> float:
        headers = payloads.sign(body, content_type=payloads.FORM)
        started = time.perf_counter()
        response = await http.post(url, content=body, headers=headers)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        return elapsed

    return list(await asyncio.gather(*(one(b) for b in bodies)))


def quantile(samples: list[float], q: float) -> float:
    """The q-quantile of samples (inclusive method)."""
    return statistics.quantiles(sorted(samples), n=100, method="inclusive")[int(q * 100) - 1]


async def measure_acks(h: Harness) -> dict[str, dict[str, float]]:
    """Alternate rounds of 200 concurrent commands against labbot and the bare app."""
    bare_server, bare_task, bare_url = await serve(bare_app(h.fake.api_url))
    samples: dict[str, list[float]] = {"bare Bolt app": [], "labbot": []}
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    try:
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            labbot_url = str(h.http.base_url.join("/slack/events"))
            targets = {"bare Bolt app": f"{bare_url}/slack/events", "labbot": labbot_url}
            for url in targets.values():  # warm-up: connections, Bolt's auth.test
                await burst(http, url, h.fake.hook_url("warm"))
            await h.bot.deps.background.drain(60)
            for _ in range(ROUNDS):
                for name, url in targets.items():
                    samples[name] += await burst(http, url, h.fake.hook_url(name.replace(" ", "-")))
                    await h.bot.deps.background.drain(60)  # labbot's background answers finish between rounds
    finally:
        bare_server.should_exit = True
        await bare_task
    return {name: {"p50": quantile(s, 0.5) * 1000, "p99": quantile(s, 0.99) * 1000, "n": len(s)}
            for name, s in samples.items()}


async def measure_lifecycle(h: Harness) -> tuple[int, dict[str, int], int]:
    """Create, build and destroy one lab from Slack; count the Web API calls it cost."""
    before = len(h.fake.calls)
    await h.command("create bench --ttl 2h", hook="bench")
    await h.settle(timeout=120)
    lab = await h.world.service.status("bench")
    card_ts = (lab.progress_ref or ":").split(":")[1]
    await h.send(payloads.block_action(LabAction.DESTROY, value=encode(LabRef(lab_id=lab.id, name="bench")),
                                       message_ts=card_ts), payloads.FORM)
    await h.settle(timeout=120)
    if (await h.world.service.status("bench")).state != "destroyed":
        raise RuntimeError("the benchmark lab was not destroyed")
    calls = [c for c in h.fake.calls[before:] if c.method != "auth.test"]
    by_method: dict[str, int] = {}
    for call in calls:
        by_method[call.method] = by_method.get(call.method, 0) + 1
    return len(calls), by_method, h.world.jobs.notices


def machine() -> str:
    """CPU model, cores, OS and Python."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{model}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def write_results(acks: dict[str, dict[str, float]], calls: int, by_method: dict[str, int], notices: int) -> str:
    """Replace this benchmark's section of RESULTS.md; return the section."""
    bare, ours = acks["bare Bolt app"], acks["labbot"]
    ratio = ours["p99"] / bare["p99"]
    lines = [
        START,
        "## Slack: ack latency and Web API calls per lab (`python -m benchmarks.slack_ack`)",
        "",
        f"Machine: {machine()}. Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"{CONCURRENT} concurrent signed `/lab list` commands over HTTP (uvicorn on loopback, one process), "
        f"{ROUNDS} alternating rounds per app, measured side by side in one run. The load generator runs in the "
        "same process and event loop as both servers, so absolute numbers include its own CPU time; the ratio is "
        "the comparison that matters:",
        "",
        "| app | requests | p50 ack (ms) | p99 ack (ms) |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {name} | {r['n']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} |" for name, r in acks.items()),
        "",
        f"p99 ratio labbot / bare app: **{ratio:.2f}** (target ≤ 1.5; Slack's limit is 3000 ms).",
        "",
        f"One lab lifecycle (create, build with {notices} engine notices, destroy from the card) against the fake "
        f"Slack at Slack's rate limits: **{calls} Web API calls** (target ≤ 15): "
        + ", ".join(f"{m} {n}" for m, n in sorted(by_method.items())) + ".",
        END,
    ]
    section = "\n".join(lines)
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")
    return section


async def main() -> int:
    """Run both measurements and record them."""
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await db.upgrade(url)
        engine = db.make_engine(url)
        try:
            sessions = db.make_sessionmaker(engine)
            async with running_bot(sessions, fake_options={}, pacer=SlackPacer(), card_interval=2.0,
                                   progress_events=100, step_delay=0.3) as h:
                acks = await measure_acks(h)
                calls, by_method, notices = await measure_lifecycle(h)
        finally:
            await engine.dispose()
    print(write_results(acks, calls, by_method, notices))
    ok = acks["labbot"]["p99"] <= 1.5 * acks["bare Bolt app"]["p99"] and calls <= 15
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
