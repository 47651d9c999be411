"""The real Slack front end (signed HTTP, fake Slack, real service, engine and SQLite) in a thread of its own, so
synchronous hypothesis tests can throw requests at it and look at the database between examples."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import sqlite3
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from services import db
from services.labs import repository as repo
from services.labs.models import LabState
from tests.slack import payloads
from tests.slack.harness import Harness, running_bot
from tests.slack.world import SIGNING_SECRET

T = TypeVar("T")
TABLES = ("labs", "lab_steps", "lab_events", "host_keys", "health_checks")


class ErrorLog(logging.Handler):
    """ERROR records of labbot's own loggers: an unexpected error is a finding even when the user got an id."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in {"bot", "handlers", "services", "slack_bolt"}:
            self.records.append(record)


class SlackBox:
    """``post`` signed bodies; ``settle`` waits for the background work; ``snapshot`` reads every table."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite+aiosqlite:///{path}"
        self.errors = ErrorLog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self.h: Harness
        self.http: httpx.Client

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:  # reported to the test thread
            self._failure = err
            self._ready.set()

    async def _serve(self) -> None:
        await db.upgrade(self.url)
        engine = db.make_engine(self.url)
        sessions = db.make_sessionmaker(engine)
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            async with running_bot(sessions, progress_events=1, overrides={"database_url": self.url},
                                   fake_options={"post_window": 0.05, "views_per_minute": 100_000}) as h:
                self.h = h
                await self._seed(h)
                self._ready.set()
                await self._stop.wait()
        finally:
            await engine.dispose()

    async def _seed(self, h: Harness) -> None:
        """Alice's ready lab ``demo`` and failed lab ``broken``: what hostile clicks and commands aim at."""
        await h.command("create demo --ttl 2h", user="U_ALICE")
        await h.settle()
        async with h.world.service.sessions() as session, session.begin():
            lab = await repo.create(session=session, name="broken", owner="U_ALICE", profile="sandbox",
                                    expires_at=(await h.world.service.status("demo")).expires_at, channel="C_LABS")
            lab.state, lab.failed_step, lab.error = LabState.FAILED, "iscsi_target", "scripted failure"
            await repo.save(session=session)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def post(self, body: str | bytes, content_type: str, **sign: Any) -> httpx.Response:
        """POST ``body`` signed as Slack signs (over the exact bytes, which need not be UTF-8)."""
        raw = body.encode() if isinstance(body, str) else body
        headers = payloads.sign("", content_type=content_type, **sign)
        timestamp = headers["x-slack-request-timestamp"]
        secret = str(sign.get("secret", SIGNING_SECRET)).encode()
        digest = hmac.new(secret, b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
        headers["x-slack-signature"] = "v0=" + digest
        return self.http.post("/slack/events", content=raw, headers=headers)

    def settle(self) -> None:
        self.run(self.h.settle(timeout=20))

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (read with the standard library, outside the bot's loop)."""
        with sqlite3.connect(self.path) as conn:
            return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}

    def lab_names(self) -> set[str]:
        """Names of every lab in the database."""
        with sqlite3.connect(self.path) as conn:
            return {row[0] for row in conn.execute("SELECT name FROM labs")}


@contextmanager
def slack_box(path: Path) -> Iterator[SlackBox]:
    box = SlackBox(path)
    thread = threading.Thread(target=box._main, name="slack-box", daemon=True)
    logging.getLogger().addHandler(box.errors)
    thread.start()
    try:
        if not box._ready.wait(60) or box._failure is not None:
            raise RuntimeError("the Slack box did not start") from box._failure
        port = box.h.http.base_url.port
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
            box.http = client
            yield box
    finally:
        logging.getLogger().removeHandler(box.errors)
        if box._loop is not None and box._stop is not None:
            box._loop.call_soon_threadsafe(box._stop.set)
        thread.join(60)
