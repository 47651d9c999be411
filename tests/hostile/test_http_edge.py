"""The HTTP port as an attacker sees it: oversized bodies, log forging, replays across replicas."""

from __future__ import annotations

import asyncio
import logging
import time
import tracemalloc
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from bot.http import MAX_BODY_BYTES, malformed
from services import claims, db
from services.db import utcnow
from tests.slack import payloads
from tests.slack.harness import running_bot
from tests.slack.world import Sessions

MIB = 1024 * 1024


async def _raw_post(port: int, head: bytes, chunks: int, chunk: bytes) -> tuple[int, bytes]:
    """Send ``head`` then up to ``chunks`` chunks; how many body bytes went out before the server stopped us,
    and what it answered (b"" when it reset the connection first)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        writer.write(head)
        for _ in range(chunks):
            writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            await asyncio.wait_for(writer.drain(), 10)
            sent += len(chunk)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except (ConnectionError, TimeoutError):
        pass
    try:
        answer = await asyncio.wait_for(reader.read(4096), 10)
    except (ConnectionError, TimeoutError):
        answer = b""
    writer.close()
    return sent, answer


async def test_an_oversized_body_is_refused_while_it_is_read(sessions: Sessions) -> None:
    async with running_bot(sessions) as h:
        port = h.http.base_url.port
        assert port is not None
        # Declared too large: refused before a byte of the body is read.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /slack/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n{" % (48 * MIB))
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status.startswith(b"HTTP/1.1 413")
        # Undeclared (chunked) 48 MiB, unsigned: read only up to the limit, so labbot never holds it.
        tracemalloc.start()
        try:
            head = (b"POST /slack/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    b"transfer-encoding: chunked\r\n\r\n")
            sent, answer = await _raw_post(port, head, 48 * 16, b"x" * (64 * 1024))
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert sent < 16 * MIB, "the server kept reading an oversized body"
        assert answer == b"" or answer.startswith(b"HTTP/1.1 413")
        assert peak < 8 * MIB, f"labbot allocated {peak / MIB:.1f} MiB for an unsigned oversized body"
        # A body at the limit is still read (and refused only for its signature).
        at_limit = await h.http.post("/slack/events", content=b"{" + b" " * (MAX_BODY_BYTES - 2) + b"}",
                                     headers={"content-type": "application/json"})
        assert at_limit.status_code == 401
        assert (await h.http.get("/healthz")).status_code == 200


async def test_unauthenticated_requests_reach_the_log_only_as_a_bounded_escaped_summary(
        sessions: Sessions, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    forged = "\n2026-12-03 08:00:00,000 INFO services.labs.service: lab demo destroyed by U_ADMIN\n"
    async with running_bot(sessions) as h:
        caplog.clear()
        body = "payload=" + forged + "x" * (512 * 1024)
        bad = await h.http.post("/slack/events", content=body, headers=payloads.sign(
            body, content_type=payloads.FORM, secret="not-the-signing-secret"))
        assert bad.status_code == 401
        stale_body = payloads.slash_command("destroy demo --yes", response_url="https://hooks.slack.com/commands/T1/SECRET-HOOK")
        stale = await h.send(stale_body, payloads.FORM, timestamp=int(time.time()) - 6 * 60)
        assert stale.status_code == 401
        header = await h.http.post("/slack/events", content="{}", headers={
            "content-type": "application/json\x1b[2J" + "y" * 4000, "x-slack-signature": "v0=00"})
        assert header.status_code == 401
    server_side = ("bot", "handlers", "services", "slack_bolt", "slack_sdk", "uvicorn")
    logged = [r.getMessage() for r in caplog.records if r.name.split(".")[0] in server_side]
    assert logged, "the refusals are logged"
    assert all("\n" not in line for line in logged), "a record spans lines (a forged record)"
    assert not [line for line in logged if "lab demo destroyed" in line and "\\n" not in line]
    assert not [line for line in logged if "SECRET-HOOK" in line or "xxxxxxxx" in line or "\x1b" in line]
    assert sum(len(line) for line in logged) < 4096, f"{sum(len(line) for line in logged)} bytes logged"


async def test_a_replay_is_acted_on_once_across_two_replicas(database_url: str) -> None:
    engines = [db.make_engine(database_url), db.make_engine(database_url)]
    first, second = (db.make_sessionmaker(e) for e in engines)
    try:
        async with running_bot(first, progress_events=1) as a, running_bot(second, progress_events=1) as b:
            await a.command("create demo --ttl 2h")
            await a.settle()
            body = payloads.slash_command("extend demo 1h", response_url=a.fake.hook_url("ext"))
            headers = payloads.sign(body, content_type=payloads.FORM)
            answers = await asyncio.gather(a.http.post("/slack/events", content=body, headers=headers),
                                           b.http.post("/slack/events", content=body, headers=headers))
            assert [r.status_code for r in answers] == [200, 200]
            await a.settle()
            await b.settle()
            lab = await a.world.service.status("demo")
            assert lab.ttl_extensions == 1, f"one signed request extended the lab {lab.ttl_extensions} times"
            # A Slack retry of an event (new signature, same event id) reaching the other replica runs once too.
            event = payloads.app_home_opened("U_ALICE", event_id="Ev-replica")
            await a.send(event, payloads.JSON)
            await b.send(event, payloads.JSON, retry=1)
            await a.settle()
            await b.settle()
            assert len(a.fake.calls_to("views.publish")) + len(b.fake.calls_to("views.publish")) == 1
        # The memory is pruned once Slack's five minutes have passed for every request it holds.
        assert await claims.count(first) > 0
        await claims.prune(first, now=utcnow() + timedelta(minutes=16))
        assert await claims.count(first) == 0
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_request_that_cannot_be_checked_for_replay_is_not_acted_on(
        sessions: Sessions, caplog: pytest.LogCaptureFixture) -> None:
    async with running_bot(sessions, progress_events=1) as h:
        await h.command("create demo --ttl 2h")
        await h.settle()
        async with sessions() as session, session.begin():  # the replay memory is gone: the database is in trouble
            await session.execute(text("DROP TABLE claims"))
        caplog.clear()
        answer = await h.command("extend demo 1h", hook="ext")
        await h.settle()
        assert answer.status_code == 503  # Slack retries a click or an event; a person sees it did not go through
        assert (await h.world.service.status("demo")).ttl_extensions == 0
        assert not h.fake.hook_bodies("ext")
        refusals = [r for r in caplog.records if r.name == "bot.http"]
        assert [r.levelno for r in refusals] == [logging.WARNING] and refusals[0].exc_info is None
        assert "replay" in refusals[0].getMessage() and "claims" not in refusals[0].getMessage()


def test_a_request_body_of_the_form_slack_sends_fits_the_limit() -> None:
    # A modal submission carrying a view at views.open's 250 kB limit, URL-encoded the way Slack sends it.
    view = "\"" * (250 * 1024)  # each character URL-encodes to three
    assert len(urlencode({"payload": view})) < MAX_BODY_BYTES


@pytest.mark.parametrize(("payload", "problem"), [
    ({"type": "event_callback", "event": {"type": "app_home_opened", "user": 1.5}}, "`user` is neither"),
    ({"type": "event_callback", "event": {"type": "message", "message": {"user": ["U1"]}}}, "`user` is neither"),
    ({"type": "event_callback", "team": 7, "event": {"type": "app_mention"}}, "`team` is neither"),
    ({"type": "event_callback", "authorizations": 3, "event": {"type": "app_mention"}}, "`authorizations` is not"),
    ({"type": "event_callback", "authorizations": [{"enterprise": [1]}], "event": {"type": "x"}}, "`enterprise`"),
    ({"type": "view_submission", "view": {"id": "V1", "channel": 5}}, "`channel` is neither"),
    ({"type": "view_submission", "response_urls": ["https://hooks.slack.com/x"]}, "`response_urls` is not"),
])
def test_ids_bolt_reads_for_its_context_must_have_slacks_shape(payload: dict[str, object], problem: str) -> None:
    """Bolt builds every request's context from these fields before any listener runs, assuming an id string or
    an object; a signed body with anything else there is refused before Bolt sees it, as JSON and as a form."""
    import json

    as_json = json.dumps(payload).encode()
    assert problem in (malformed(as_json, "application/json") or "")
    assert problem in (malformed(urlencode({"payload": json.dumps(payload)}).encode(), payloads.FORM) or "")


def test_what_slack_sends_passes_the_shape_check() -> None:
    import json

    event = {"type": "event_callback", "team_id": "T1", "authorizations": [{"team_id": "T1", "user_id": "U2",
             "enterprise_id": None, "is_bot": True}], "event": {"type": "app_home_opened", "user": "U1",
             "channel": "D1", "tab": "home"}}
    submission = {"type": "view_submission", "user": {"id": "U1", "team_id": "T1"}, "team": {"id": "T1"},
                  "enterprise": None, "view": {"id": "V1", "team_id": "T1", "state": {"values": {}}},
                  "response_urls": [{"response_url": "https://hooks.slack.com/x", "channel_id": "C1"}]}
    assert malformed(json.dumps(event).encode(), "application/json") is None
    assert malformed(urlencode({"payload": json.dumps(submission)}).encode(), payloads.FORM) is None
