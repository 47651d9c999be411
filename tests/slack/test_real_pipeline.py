"""Slack on the real pipeline: ``labbot run``'s own ``run_bot`` over signed HTTP, the fake Slack, and the real
domain (Runtime, scheduler) building one lab in a private lab-in-a-box.

One lab, start to end: ``/lab create`` → one card that ends ready, step details in its thread; ``/lab access``
only ephemeral; the scheduler in the bot process warns before expiry; the Destroy button → destroyed, nothing
left on the platform. Everything the run produced (logs at DEBUG, every request the fake Slack received, every
HTTP response, /metrics, the database) is then scanned for the secrets the run used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import JSON, String, Text, select

from bot.blocks.ids import LabAction, LabRef, encode
from bot.slack.runners import run_bot
from config.settings import Settings
from sandbox import lifecycle
from sandbox.config import SandboxConfig
from sandbox.hooks import OuterSandboxHooks
from sandbox.zstack_sim.seed import OuterSeed
from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from services import db
from services.crypto import SecretBox
from services.db import Base, utcnow
from services.errors import NotFoundError
from services.labs import repository as repo
from services.labs.models import Lab
from tests.fakes.slack_api import FakeSlack
from tests.sandbox.labbox import PUBLIC_NET, require_sandbox
from tests.security.scan import find_secrets
from tests.slack import payloads

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

_RUN = os.getpid()
PREFIX = "s" + "abcdefghijklmnopqrstuvwxyz"[(_RUN // 26) % 26] + "abcdefghijklmnopqrstuvwxyz"[_RUN % 26]
# Distinct, recognisable secrets for this run, so a leak anywhere is found by value.
BOT_TOKEN = f"xoxb-{secrets.token_hex(6)}-{secrets.token_hex(12)}"
SIGNING_SECRET = secrets.token_hex(16)
SECRET_KEY = "k-" + secrets.token_urlsafe(32)
PLATFORM_PASSWORD = "pw-" + secrets.token_urlsafe(12)


@pytest.fixture(scope="module")
def box() -> Iterator[SandboxConfig]:
    require_sandbox()
    config = SandboxConfig(base_dir=Path(f"/var/lib/labbot-sandbox-test-slack-{_RUN}"), prefix=PREFIX,
                           public_gateway=f"{PUBLIC_NET}.1/24")
    asyncio.run(lifecycle.up(config))
    try:
        yield config
    finally:
        asyncio.run(lifecycle.down(config))
        assert not config.base_dir.exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder(logging.Handler):
    """Every log record of the run, formatted with its traceback, at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def recording_logs() -> Iterator[Recorder]:
    root = logging.getLogger()
    handler, level = Recorder(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@contextlib.asynccontextmanager
async def labbot_run(settings: Settings, port: int) -> AsyncIterator[None]:
    """``labbot run`` in this process (same ``run_bot``), stopped at the end of the block."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_bot(settings, host="127.0.0.1", port=port, stop=stop, handle_signals=False))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(300):
                if task.done():
                    task.result()  # start-up failed: raise its error
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.1)):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def text_of(message_blocks: list[dict[str, Any]]) -> str:
    return json.dumps(message_blocks, ensure_ascii=False)


async def test_a_lab_from_slack_on_the_real_pipeline(box: SandboxConfig, tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}"
    await db.upgrade(database_url)
    port = free_port()
    responses: list[str] = []
    with recording_logs() as logs:
        async with (
            serve_simulator("outer", hooks=OuterSandboxHooks(box), latency_scale=0.02, admin_password=PLATFORM_PASSWORD,
                            outer_seed=OuterSeed(ranges=box.public_ranges())) as sim,
            FakeSlack(bot_token=BOT_TOKEN, post_window=0.2) as fake,
        ):
            settings = Settings(
                database_url=database_url, state_dir=tmp_path, platform_url=sim.url, platform_account="admin",
                platform_password=SecretStr(PLATFORM_PASSWORD), default_profile="sandbox",
                slack_bot_token=SecretStr(BOT_TOKEN), slack_signing_secret=SecretStr(SIGNING_SECRET),
                slack_api_url=fake.api_url, secret_key=SecretStr(SECRET_KEY), channel="C_LABS",
                admin_users=["U_ADMIN"], expiry_interval_seconds=5, expiry_warning_offsets=["30m"],
            )
            engine = db.make_engine(database_url)
            sessions = db.make_sessionmaker(engine)

            async def lab() -> Lab:
                async with sessions() as session:
                    return await repo.get_latest_by_name(session=session, name="rp")

            async def send(body: str, content_type: str = payloads.FORM) -> httpx.Response:
                headers = payloads.sign(body, content_type=content_type, secret=SIGNING_SECRET)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                    response = await http.post("/slack/events", content=body, headers=headers)
                responses.append(response.text)
                return response

            try:
                async with labbot_run(settings, port):
                    await run_the_lab(fake, sim, send, lab, sessions, box, responses, port)
            finally:
                await engine.dispose()
    leaks = find_secrets(
        {"Slack bot token": BOT_TOKEN, "signing secret": SIGNING_SECRET, "LABBOT secret key": SECRET_KEY,
         "platform password": PLATFORM_PASSWORD, **CAPTURED},
        {"logs": logs.lines, "fake Slack requests": [b for _, _, b in fake.raw],
         "fake Slack request headers": [json.dumps(h) for _, h, _ in fake.raw], "HTTP responses": responses},
    )
    assert leaks == []
    assert len(logs.lines) > 200 and len(fake.raw) > 10 and len(responses) > 5  # the scan saw the whole run
    # The root password goes to its owner only: never in a log line or any other request to Slack.
    private_paths = ("/hooks/access", "/api/chat.postEphemeral")
    shared = [body for path, _, body in fake.raw if not path.startswith(private_paths)]
    found = find_secrets({"lab root password": ROOT[0]}, {"logs": logs.lines, "fake Slack requests": shared})
    assert found == [], [line for line in logs.lines if ROOT[0] in line]
    assert not [line for line in logs.lines if line.startswith(("ERROR", "CRITICAL"))]


CAPTURED: dict[str, str] = {}  # secrets the pipeline made, read while the lab was ready
ROOT: list[str] = []  # the lab's root password (shown privately to its owner, so scanned separately)


async def run_the_lab(fake: FakeSlack, sim: RunningSimulator, send: Any, lab: Any, sessions: Any,
                      box: SandboxConfig, responses: list[str], port: int) -> None:
    created = await send(payloads.slash_command("create rp --ttl 2h", response_url=fake.hook_url("create")))
    assert created.status_code == 200
    await wait_for(lambda: _state(lab, "ready", "failed"), 120, "the lab finished building")
    ready = await lab()
    assert ready.state == "ready", (ready.failed_step, ready.error)

    # One card, updated in place until it says ready; the steps' details are in its thread.
    await fake.wait_until(lambda: len(fake.top_level("C_LABS")) == 1 and ":white_check_mark: *Ready*" in text_of(
        fake.top_level("C_LABS")[0].blocks), timeout=15)
    cards = fake.top_level("C_LABS")
    assert len(cards) == 1
    card = cards[0]
    assert ready.progress_ref == f"C_LABS:{card.ts}"
    assert len(card.versions) > 1 and fake.calls_to("chat.update")
    thread = " ".join(text_of(m.blocks) for m in fake.thread("C_LABS", card.ts)) + " ".join(
        m.text for m in fake.thread("C_LABS", card.ts))
    assert "iSCSI" in thread or "iscsi" in thread, thread[:500]

    # The secrets the pipeline made, read the way labbot reads them, to scan everything for afterwards.
    box_ = SecretBox(SecretStr(SECRET_KEY))
    assert ready.host_password_enc and ready.ssh_private_key_enc
    root_password = box_.decrypt(ready.host_password_enc).get_secret_value()
    private_key = box_.decrypt(ready.ssh_private_key_enc).get_secret_value()
    CAPTURED.update({"lab SSH private key": private_key})
    ROOT.append(root_password)
    await assert_database_holds_no_plaintext(sessions, {"lab root password": root_password,
                                                        "lab SSH private key": private_key,
                                                        "platform password": PLATFORM_PASSWORD,
                                                        "Slack bot token": BOT_TOKEN, "secret key": SECRET_KEY,
                                                        "signing secret": SIGNING_SECRET})

    # Access details: only to the person who asked, never in the channel.
    channel_before = len([c for c in fake.calls if c.method in ("chat.postMessage", "chat.update")])
    access = await send(payloads.slash_command("access rp", response_url=fake.hook_url("access")))
    assert access.status_code == 200
    await fake.wait_until(lambda: any(root_password in json.dumps(b) for b in fake.hook_bodies("access"))
                          or any(root_password in json.dumps(e) for e in fake.ephemerals), timeout=15)
    private = [b for b in fake.hook_bodies("access") if root_password in json.dumps(b)]
    assert all(b.get("response_type", "ephemeral") == "ephemeral" and not b.get("replace_original") for b in private)
    public = [m for m in fake.messages.values() if root_password in m.text + text_of(m.blocks)]
    assert public == [] and root_password not in access.text
    assert len([c for c in fake.calls if c.method in ("chat.postMessage", "chat.update")]) == channel_before
    # Someone else asking gets a refusal, and no credentials.
    other = await send(payloads.slash_command("access rp", user="U_BOB", response_url=fake.hook_url("bob")))
    await fake.wait_until(lambda: bool(fake.hook_bodies("bob")) or "only" in other.text, timeout=10)
    assert root_password not in json.dumps(fake.hook_bodies("bob")) + other.text

    # The scheduler runs in the bot process: a lab 10 minutes from expiry is warned about in the channel.
    async with sessions() as session, session.begin():
        row = await repo.get(session=session, lab_id=ready.id)
        row.expires_at = utcnow() + timedelta(minutes=10)
        await repo.save(session=session)
    await wait_for(lambda: _state(lab, "expiring"), 15, "the expiry sweep warned the lab")
    await fake.wait_until(lambda: any("rp" in m.text + text_of(m.blocks) and "xpire" in m.text + text_of(m.blocks)
                                      for m in fake.top_level("C_LABS")[1:]), timeout=15)

    # Destroy from the card's button (the click Slack sends after its confirm dialog).
    click = payloads.block_action(LabAction.DESTROY, value=encode(LabRef(lab_id=ready.id, name="rp")),
                                  message_ts=card.ts)
    assert (await send(click)).status_code == 200
    await wait_for(lambda: _state(lab, "destroyed", "failed"), 60, "the lab was destroyed")
    assert (await lab()).state == "destroyed"
    await fake.wait_until(lambda: ":wastebasket: *Destroyed*" in text_of(card.blocks), timeout=15)
    assert len([m for m in fake.top_level("C_LABS") if m.ts == card.ts]) == 1
    assert not fake.rate_limited

    # Nothing left on the lab platform, nor in the box.
    assert sim.state.records["vm"] == {} and sim.state.records["volume"] == {}, sim.state.records["volume"]
    assert (await lifecycle.status(box)).vms == []

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        metrics = (await http.get("/metrics")).text
        responses.append(metrics)
        responses.append((await http.get("/healthz")).text)
    assert 'labbot_labs{state="destroyed"} 1.0' in metrics


async def _state(lab: Any, *states: str) -> bool:
    try:
        return (await lab()).state in states
    except NotFoundError:  # the create is acked before the lab's row is written
        return False


async def assert_database_holds_no_plaintext(sessions: Any, secrets_: dict[str, str]) -> None:
    """Every text column of every table, scanned for each secret (and its obvious encodings)."""
    rows: list[str] = []
    async with sessions() as session:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
            if columns:
                for row in (await session.execute(select(*columns))).all():
                    rows.extend(f"{table.name}: {json.dumps(value, default=str)}" for value in row if value)
    assert rows, "the scan read the database"
    assert find_secrets(secrets_, {"database": rows}) == []
