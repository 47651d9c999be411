"""A fake Slack: Web API, response_url hooks and a Socket Mode WebSocket, served over real HTTP on loopback.

It answers the methods labbot uses with Slack's response shapes, checks tokens, validates Block Kit against
Slack's limits (answering ``invalid_blocks``/``msg_blocks_too_long``/``view_too_large`` as Slack does), keeps
the messages and views it was sent, records every call, and enforces Slack's rate limits with HTTP 429 and
``Retry-After``: chat.postMessage about one per second per channel, chat.update 50 per minute, views.* 100 per
minute. A request that arrives while its Retry-After still runs is counted in ``violations``: a client that
honours Retry-After never causes one.

Conversations are modelled as Slack sees them from the bot's side (``Conversation``): a public channel the bot
is not in takes posts only with ``chat:write.public`` (else ``not_in_channel``) and refuses its history
(``not_in_channel``); a private channel, group DM or someone else's DM the bot is not in does not exist for it
(``channel_not_found``, from every method); an archived channel answers ``is_archived``. An undeclared ``C…`` id
is a public channel the bot is in (most tests need nothing more); declare others with ``conversation``, and the
app's DM with a person with ``app_dm``. With ``scopes`` set, a method whose scope the app lacks answers
``missing_scope`` (the scope per method and conversation kind: docs.slack.dev/reference/methods/*).

Files go through Slack's upload flow (docs.slack.dev/reference/methods/files.getUploadURLExternal and
files.completeUploadExternal): the first answers an ``upload_url`` (here, this server's ``/upload/<file id>``)
and a ``file_id`` for a ``filename`` and a ``length``; the bytes are POSTed there and must be exactly ``length``
bytes; the second shares the uploaded files (``files``: a JSON array of ``{"id", "title"}``) in ``channel_id``,
in the thread of ``thread_ts`` when given, with ``initial_comment``. Files never uploaded, uploaded twice or
completed twice are refused.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

BOT_AUTH = {"ok": True, "url": "https://labbot-test.slack.com/", "team": "Labbot Test", "user": "labbot",
            "team_id": "T111", "user_id": "U0BOT", "bot_id": "B0BOT", "is_enterprise_install": False}


@dataclass
class Call:
    """One request the fake answered."""

    method: str
    args: dict[str, Any]
    status: int
    ok: bool
    error: str | None
    at: float
    violation: bool = False


@dataclass
class Conversation:
    """A conversation as the bot sees it: its kind, whether the bot is a member, whether it is archived."""

    id: str
    kind: str = "public"  # public | private | im | mpim
    member: bool = True
    archived: bool = False
    user: str | None = None  # the person, in the app's DM with them

    def info(self) -> dict[str, Any]:
        """The ``channel`` object of conversations.info."""
        channel: dict[str, Any] = {
            "id": self.id, "created": 1700000000, "is_archived": self.archived,
            "is_channel": self.kind in ("public", "private"), "is_group": self.kind == "private",
            "is_im": self.kind == "im", "is_mpim": self.kind == "mpim", "is_private": self.kind != "public",
        }
        if self.kind == "im":
            channel.update(user=self.user, is_open=True)
        else:
            channel.update(name=self.id.lower(), is_member=self.member)
        return channel


# The bot scope a method needs, per kind of conversation (docs.slack.dev/reference/methods/<method>, Scopes).
_READ_SCOPE = {"public": "channels:read", "private": "groups:read", "im": "im:read", "mpim": "mpim:read"}
_HISTORY_SCOPE = {"public": "channels:history", "private": "groups:history", "im": "im:history",
                  "mpim": "mpim:history"}
_POSTING = {"chat.postMessage", "chat.postEphemeral", "chat.update"}


@dataclass
class StoredMessage:
    """A message as Slack keeps it, with every version chat.update gave it."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    versions: list[list[dict[str, Any]]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)  # ids of files shared with this message


@dataclass
class StoredFile:
    """A file as the upload flow left it: declared, then uploaded, then shared (or not)."""

    id: str
    filename: str
    length: int
    alt_txt: str | None = None
    data: bytes | None = None
    title: str | None = None
    shared_in: tuple[str, str | None] | None = None  # (channel, thread_ts)


class _Window:
    """At most ``limit`` calls per ``window`` seconds for one key (a sliding log, as Slack's limiter behaves)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.hits: dict[str, deque[float]] = defaultdict(deque)

    def retry_after(self, key: str, now: float) -> float:
        """0 when the call may go ahead (and is counted), else the seconds until it may."""
        hits = self.hits[key]
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) < self.limit:
            hits.append(now)
            return 0.0
        return hits[0] + self.window - now


class FakeSlack:
    """The fake Slack server; ``await start()``, point the client at ``api_url``, read ``calls`` and ``messages``."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-fake-0000000000",
        app_token: str = "xapp-fake-0000000000",
        posts_per_second_per_channel: int = 1,
        post_window: float = 1.0,
        updates_per_minute: int = 50,
        update_window: float = 60.0,
        views_per_minute: int = 100,
        scopes: frozenset[str] | None = None,
    ) -> None:
        self.bot_token, self.app_token = bot_token, app_token
        self.scopes = scopes  # None: every scope granted
        self.conversations: dict[str, Conversation] = {}
        # User groups (subteams) by id: their members, and whether the group is disabled.
        self.usergroups: dict[str, list[str]] = {}
        self.disabled_usergroups: set[str] = set()
        # Each user's locale as Slack keeps it (users.info answers it only with include_locale=true).
        self.user_locales: dict[str, str] = {}
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], StoredMessage] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.home: dict[str, dict[str, Any]] = {}
        self.hooks: list[tuple[str, dict[str, Any]]] = []
        # Every request exactly as it arrived (path, non-auth headers, body), for scans of what labbot sent.
        self.raw: list[tuple[str, dict[str, str], bytes]] = []
        self.socket_acks: dict[str, dict[str, Any]] = {}
        self.socket_connected = asyncio.Event()
        self.fail_next: dict[str, str] = {}  # method → error to answer once (e.g. "channel_not_found")
        self.files: dict[str, StoredFile] = {}
        self._file_ids = itertools.count(1)
        self._limits = {
            "chat.postMessage": _Window(posts_per_second_per_channel, post_window),
            "chat.update": _Window(updates_per_minute, update_window),
            "views.open": _Window(views_per_minute, 60.0),
            "views.publish": _Window(views_per_minute, 60.0),
            "usergroups.users.list": _Window(20, 60.0),  # Tier 2
        }
        self._blocked_until: dict[tuple[str, str], float] = {}
        self._ts = itertools.count(100)
        self._view_ids = itertools.count(1)
        self._used_triggers: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> FakeSlack:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/hooks/{path:.*}", self._hook)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/link", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Close sockets and stop listening."""
        for ws in self._sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the workspace ----------------------------------------------------------------------------------

    def conversation(self, channel: str, *, kind: str = "public", member: bool = True,
                     archived: bool = False) -> Conversation:
        """Declare a conversation (a private channel the bot is not in: ``kind="private", member=False``)."""
        self.conversations[channel] = Conversation(channel, kind, member, archived)
        return self.conversations[channel]

    def app_dm(self, user: str) -> str:
        """The id of the app's DM with ``user`` (its Messages tab), as Slack gives it in payloads."""
        channel = "D" + user.removeprefix("U")
        self.conversations.setdefault(channel, Conversation(channel, "im", True, user=user))
        return channel

    def _find(self, channel: str) -> Conversation | None:
        """The conversation an id names, as the bot sees it; None when it does not exist for the bot."""
        if channel.startswith("U"):
            return self.conversations[self.app_dm(channel)]
        found = self.conversations.get(channel)
        if found is None and channel.startswith("C"):
            found = self.conversation(channel)
        if found is not None and found.kind != "public" and not found.member:
            return None  # private, group DM or someone else's DM: invisible to a non-member
        return found

    def _conversation_refusal(self, method: str, args: dict[str, Any]) -> dict[str, Any] | None:
        """Slack's answer when the bot may not use ``args["channel"]`` with ``method`` (or lacks the scope)."""
        granted = self.scopes
        if method in _POSTING and granted is not None and "chat:write" not in granted:
            return {"ok": False, "error": "missing_scope", "needed": "chat:write"}
        channel = str(args.get("channel") or "")
        found = self._find(channel) if channel else None
        if found is None:
            return {"ok": False, "error": "channel_not_found"}
        if granted is not None:
            needed = {"conversations.info": _READ_SCOPE, "conversations.history": _HISTORY_SCOPE}.get(method)
            if needed is not None and needed[found.kind] not in granted:
                return {"ok": False, "error": "missing_scope", "needed": needed[found.kind]}
        if method == "conversations.history" and not found.member:
            return {"ok": False, "error": "not_in_channel"}
        if method in _POSTING:
            if found.archived:
                return {"ok": False, "error": "is_archived"}
            public_ok = granted is None or "chat:write.public" in granted
            if not found.member and not (method == "chat.postMessage" and public_ok):
                return {"ok": False, "error": "not_in_channel"}
        return None

    @property
    def api_url(self) -> str:
        """Base URL for AsyncWebClient / SLACK_API_URL."""
        return f"http://127.0.0.1:{self.port}/api/"

    def hook_url(self, name: str = "cmd") -> str:
        """A response_url that lands in ``hooks``."""
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    # --- queries for tests -------------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        """Every call of one method, in order."""
        return [c for c in self.calls if c.method == method]

    @property
    def rate_limited(self) -> list[Call]:
        """Calls answered with 429."""
        return [c for c in self.calls if c.status == 429]

    @property
    def violations(self) -> int:
        """Calls made while a Retry-After the client was given had not yet run out."""
        return sum(1 for c in self.calls if c.violation)

    def top_level(self, channel: str) -> list[StoredMessage]:
        """Messages posted in the channel itself (not in threads), oldest first."""
        return [m for m in self.messages.values() if m.channel == channel and m.thread_ts is None]

    def thread(self, channel: str, ts: str) -> list[StoredMessage]:
        """Replies in one message's thread, oldest first."""
        return [m for m in self.messages.values() if m.channel == channel and m.thread_ts == ts]

    def shared_files(self, channel: str, thread_ts: str | None = None) -> list[StoredFile]:
        """Files shared in a channel (in one thread, if given), in the order they were shared."""
        return [f for f in self.files.values() if f.shared_in == (channel, thread_ts)]

    def hook_bodies(self, name: str | None = None) -> list[dict[str, Any]]:
        """Bodies posted to response_urls (of one name, if given)."""
        return [body for path, body in self.hooks if name is None or path == name]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll until ``predicate()`` holds; fail the test with what was recorded if it never does."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                seen = [(c.method, c.status, c.error) for c in self.calls[-20:]]
                raise AssertionError(f"condition not met within {timeout}s; last calls: {seen}")
            await asyncio.sleep(0.01)

    async def socket_send(self, envelope: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Push one Socket Mode envelope to the connected client and wait for its ack."""
        await asyncio.wait_for(self.socket_connected.wait(), timeout)
        await self._sockets[-1].send_str(json.dumps(envelope))
        deadline = time.monotonic() + timeout
        while envelope["envelope_id"] not in self.socket_acks:
            if time.monotonic() > deadline:
                raise AssertionError(f"no ack for envelope {envelope['envelope_id']}")
            await asyncio.sleep(0.01)
        return self.socket_acks[envelope["envelope_id"]]

    # --- HTTP handlers -----------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = dict(request.query)
        raw = await request.read()
        self._record(request, raw)
        if raw:
            if raw.lstrip().startswith(b"{"):
                args.update(json.loads(raw))
            else:
                args.update(parse_qsl(raw.decode()))
        now = time.monotonic()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or args.get("token")
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if not token:
            return self._answer(method, args, now, {"ok": False, "error": "not_authed"})
        if token != expected:
            return self._answer(method, args, now, {"ok": False, "error": "invalid_auth"})
        limiter = self._limits.get(method)
        if limiter is not None:
            key = args.get("channel", "") if method == "chat.postMessage" else "workspace"
            violation = self._blocked_until.get((method, key), 0.0) > now
            wait = limiter.retry_after(key, now)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                self._blocked_until[(method, key)] = now + seconds
                self.calls.append(Call(method, args, 429, False, "ratelimited", now, violation))
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                         headers={"Retry-After": str(seconds)})
        if method in self.fail_next:
            return self._answer(method, args, now, {"ok": False, "error": self.fail_next.pop(method)})
        if method.startswith("files.") and self.scopes is not None and "files:write" not in self.scopes:
            return self._answer(method, args, now, {"ok": False, "error": "missing_scope", "needed": "files:write"})
        if method in _POSTING or method.startswith("conversations."):
            refusal = self._conversation_refusal(method, args)
            if refusal is not None:
                return self._answer(method, args, now, refusal)
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return self._answer(method, args, now, {"ok": False, "error": "unknown_method"})
        return self._answer(method, args, now, handler(args))

    def _record(self, request: web.Request, raw: bytes) -> None:
        # The bearer token is how a client must authenticate to Slack; every other byte is kept for scans.
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        self.raw.append((request.path_qs, headers, raw))

    def _answer(self, method: str, args: dict[str, Any], now: float, body: dict[str, Any]) -> web.Response:
        self.calls.append(Call(method, args, 200, bool(body.get("ok")), body.get("error"), now))
        return web.json_response(body)

    async def _hook(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if sum(1 for p, _ in self.hooks if p == path) >= 5:
            return web.Response(status=404, text="used_url")  # Slack allows 5 responses per response_url
        raw = await request.read()
        self._record(request, raw)
        body = json.loads(raw or b"{}")
        self.hooks.append((path, body))
        self.calls.append(Call("response_url", body, 200, True, None, time.monotonic()))
        return web.Response(text="ok")

    async def _upload(self, request: web.Request) -> web.Response:
        # The upload URL: the file's bytes, raw or as a multipart form; exactly the length declared.
        stored = self.files.get(request.match_info["file_id"])
        raw = await request.read()
        self._record(request, raw)
        if stored is None or stored.data is not None:
            self.calls.append(Call("upload", {"file_id": request.match_info["file_id"]}, 404, False, "not_found",
                                   time.monotonic()))
            return web.Response(status=404, text="not found")
        if request.content_type.startswith("multipart/"):
            # Slack takes a form too; slack_sdk (and so labbot) sends the raw bytes, which is all this fake reads.
            return web.Response(status=400, text="multipart bodies are not accepted by this fake")
        if len(raw) != stored.length:
            self.calls.append(Call("upload", {"file_id": stored.id, "size": len(raw)}, 400, False, "bad_length",
                                   time.monotonic()))
            return web.Response(status=400, text=f"expected {stored.length} bytes, got {len(raw)}")
        stored.data = raw
        self.calls.append(Call("upload", {"file_id": stored.id, "size": len(raw)}, 200, True, None, time.monotonic()))
        return web.Response(text=f"OK - {len(raw)}")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1,
                                      "connection_info": {"app_id": "A111"}}))
        self.socket_connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                if "envelope_id" in data:
                    self.socket_acks[data["envelope_id"]] = data
        return ws

    # --- methods -------------------------------------------------------------------------------------------

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return dict(BOT_AUTH)

    def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link"}

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        if channel.startswith("U"):
            channel = self.app_dm(channel)  # a bot posting to a user id lands in their DM with the app
        problem = message_problem(args)
        if problem:
            return {"ok": False, "error": problem}
        thread_ts = args.get("thread_ts")
        if thread_ts and (channel, thread_ts) not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        ts = f"1700000000.{next(self._ts):06d}"
        blocks = _blocks(args)
        metadata = _json_arg(args.get("metadata")) or None
        self.messages[(channel, ts)] = StoredMessage(channel, ts, str(args.get("text", "")), blocks, thread_ts,
                                                     [blocks], metadata)
        return {"ok": True, "channel": channel, "ts": ts,
                "message": {"type": "message", "subtype": "bot_message", "text": args.get("text", ""), "ts": ts,
                            "bot_id": BOT_AUTH["bot_id"], "blocks": blocks}}

    def _m_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        found = self._find(str(args.get("channel")))
        assert found is not None  # _conversation_refusal answered channel_not_found
        return {"ok": True, "channel": found.info()}

    def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = str(args.get("filename") or "")
        length = str(args.get("length") or "")
        if not filename or not length.isdigit() or int(length) < 1:
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._file_ids):010d}"
        self.files[file_id] = StoredFile(file_id, filename, int(length), alt_txt=args.get("alt_txt"))
        return {"ok": True, "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            items = json.loads(args["files"]) if isinstance(args.get("files"), str) else args.get("files")
        except (KeyError, ValueError):
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) and "id" in i for i in items):
            return {"ok": False, "error": "invalid_arguments"}
        stored = [self.files.get(str(item["id"])) for item in items]
        if any(f is None or f.data is None or f.shared_in is not None for f in stored):
            return {"ok": False, "error": "file_not_found"}
        channel = args.get("channel_id")
        thread_ts = args.get("thread_ts")
        if thread_ts and not channel:
            return {"ok": False, "error": "invalid_arguments"}
        if channel:
            found = self._find(str(channel))
            if found is None:
                return {"ok": False, "error": "channel_not_found"}
            if not found.member:
                return {"ok": False, "error": "not_in_channel"}
            channel = found.id  # a user id shares into the app's DM with them
        if thread_ts and ((channel, thread_ts) not in self.messages or self.messages[(channel, thread_ts)].thread_ts):
            return {"ok": False, "error": "invalid_thread_ts"}
        shared = []
        for item, file in zip(items, stored, strict=True):
            assert file is not None
            file.title = item.get("title") or file.filename
            file.shared_in = (channel, thread_ts) if channel else None
            shared.append({"id": file.id, "name": file.filename, "title": file.title, "size": file.length})
        if channel:
            ts = f"1700000000.{next(self._ts):06d}"
            self.messages[(channel, ts)] = StoredMessage(channel, ts, str(args.get("initial_comment") or ""), [],
                                                         thread_ts, [], None, [f["id"] for f in shared])
        return {"ok": True, "files": shared}

    def _m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        # Top-level messages, newest first; message metadata only when asked for, as Slack does.
        channel = str(args.get("channel") or "")
        limit = min(int(args.get("limit") or 100), 999)
        with_metadata = str(args.get("include_all_metadata", "")).lower() in {"1", "true"}
        found = sorted(self.top_level(channel), key=lambda m: m.ts, reverse=True)[:limit]
        messages = []
        for message in found:
            item: dict[str, Any] = {"type": "message", "subtype": "bot_message", "ts": message.ts,
                                    "text": message.text, "bot_id": BOT_AUTH["bot_id"], "blocks": message.blocks}
            if with_metadata and message.metadata:
                item["metadata"] = message.metadata
            messages.append(item)
        return {"ok": True, "messages": messages, "has_more": False}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args.get("channel")), str(args.get("ts")))
        stored = self.messages.get(key)
        if stored is None:
            return {"ok": False, "error": "message_not_found"}
        problem = message_problem(args)
        if problem:
            return {"ok": False, "error": problem}
        stored.blocks, stored.text = _blocks(args), str(args.get("text", ""))
        stored.versions.append(stored.blocks)
        return {"ok": True, "channel": key[0], "ts": key[1], "text": stored.text,
                "message": {"text": stored.text, "user": BOT_AUTH["user_id"], "blocks": stored.blocks}}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel") or not args.get("user"):
            return {"ok": False, "error": "invalid_arguments"}
        problem = message_problem(args)
        if problem:
            return {"ok": False, "error": problem}
        self.ephemerals.append(dict(args, blocks=_blocks(args)))
        return {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}

    def _m_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """usergroups.users.list (docs.slack.dev/reference/methods/usergroups.users.list): the member ids of one
        group; scope usergroups:read; a disabled group only with ``include_disabled``."""
        if self.scopes is not None and "usergroups:read" not in self.scopes:
            return {"ok": False, "error": "missing_scope", "needed": "usergroups:read"}
        group = str(args.get("usergroup") or "")
        if not group:
            return {"ok": False, "error": "invalid_arguments"}
        include_disabled = str(args.get("include_disabled", "")).lower() in {"1", "true"}
        if group not in self.usergroups or (group in self.disabled_usergroups and not include_disabled):
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """users.info (docs.slack.dev/reference/methods/users.info): scope users:read; ``user.locale`` only when
        ``include_locale`` is true; an unknown id is ``user_not_found``."""
        if self.scopes is not None and "users:read" not in self.scopes:
            return {"ok": False, "error": "missing_scope", "needed": "users:read"}
        user = str(args.get("user") or "")
        if not user:
            return {"ok": False, "error": "invalid_arguments"}
        if not user.startswith(("U", "W")):
            return {"ok": False, "error": "user_not_found"}
        answer: dict[str, Any] = {"id": user, "name": user.lower(), "is_bot": False, "tz": "Asia/Shanghai"}
        if str(args.get("include_locale", "")).lower() in {"1", "true"}:
            answer["locale"] = self.user_locales.get(user, "en-US")
        return {"ok": True, "user": answer}

    def _m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = str(args.get("trigger_id") or "")
        if not trigger:
            return {"ok": False, "error": "invalid_arguments",
                    "response_metadata": {"messages": ["invalid `trigger_id`"]}}
        if trigger in self._used_triggers:
            return {"ok": False, "error": "exchanged_trigger_id"}
        view = _json_arg(args.get("view"))
        problem = view_problem(view, "modal")
        if problem:
            return {"ok": False, "error": problem}
        self._used_triggers.add(trigger)
        view_id = f"V{next(self._view_ids):08d}"
        stored = dict(view, id=view_id, team_id="T111", state={"values": {}}, hash=f"{time.time():.0f}.x",
                      root_view_id=view_id, app_id="A111", bot_id=BOT_AUTH["bot_id"])
        self.views[view_id] = stored
        return {"ok": True, "view": stored}

    def _m_views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user_id") or "")
        if not user:
            return {"ok": False, "error": "invalid_arguments"}
        view = _json_arg(args.get("view"))
        problem = view_problem(view, "home")
        if problem:
            return {"ok": False, "error": problem}
        view_id = self.home.get(user, {}).get("id") or f"V{next(self._view_ids):08d}"
        self.home[user] = dict(view, id=view_id)
        return {"ok": True, "view": self.home[user]}


def _json_arg(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return json.loads(value)
    return dict(value or {})


def _blocks(args: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = args.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else list(blocks)


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(_chars(v) for v in value)
    return 0


def message_problem(args: dict[str, Any]) -> str | None:
    """The error Slack would answer for this message's text and blocks, or None."""
    blocks = _blocks(args)
    text = args.get("text")
    if not blocks and not text:
        return "no_text"
    if text is not None and len(str(text)) > 40_000:
        return "msg_too_long"
    if len(blocks) > 50:
        return "invalid_blocks"
    if any(block_problem(b) for b in blocks):
        return "invalid_blocks"
    if _chars(blocks) > 13_200:
        return "msg_blocks_too_long"
    return None


def view_problem(view: dict[str, Any], kind: str) -> str | None:
    """The error Slack would answer for this view, or None."""
    if view.get("type") != kind:
        return "invalid_arguments"
    blocks = view.get("blocks") or []
    if not 1 <= len(blocks) <= 100 or any(block_problem(b) for b in blocks):
        return "invalid_blocks"
    if kind == "modal" and any(len((view.get(k) or {}).get("text", "")) > 24 for k in ("title", "submit", "close")):
        return "invalid_arguments"
    if kind == "home" and ("submit" in view or "close" in view):
        return "invalid_arguments"
    if len(view.get("private_metadata") or "") > 3000:
        return "invalid_arguments"
    if len(json.dumps(view)) > 250_000:
        return "view_too_large"
    return None


def block_problem(block: dict[str, Any]) -> str | None:
    """Why Slack would refuse one block (a subset of Block Kit's rules: the ones labbot could break), checked
    by slack_sdk's own models as well (``Block.parse(...).to_dict()`` validates lengths, counts and kinds)."""
    try:
        model = Block.parse(block)
        if model is None:
            return f"slack_sdk does not know block {block.get('type')}"
        model.to_dict()
    except (SlackObjectFormationError, KeyError, TypeError, ValueError) as err:
        return f"slack_sdk refuses it: {err}"
    kind = block.get("type")
    if len(block.get("block_id", "")) > 255:
        return "block_id too long"
    if kind == "section":
        if "text" not in block and "fields" not in block:
            return "section without text"
        if len(block.get("text", {}).get("text", "")) > 3000:
            return "section text over 3000"
        fields = block.get("fields", [])
        if len(fields) > 10 or any(len(f.get("text", "")) > 2000 for f in fields):
            return "bad fields"
    elif kind == "header":
        if len(block["text"]["text"]) > 150 or block["text"]["type"] != "plain_text":
            return "bad header"
    elif kind == "context":
        if not 1 <= len(block.get("elements", [])) <= 10:
            return "bad context"
    elif kind == "actions":
        elements = block.get("elements", [])
        if not 1 <= len(elements) <= 25 or any(_element_problem(e) for e in elements):
            return "bad actions"
    elif kind == "input":
        if "label" not in block or "element" not in block or len(block["label"].get("text", "")) > 2000:
            return "bad input"
    elif kind != "divider":
        return f"unknown block type {kind}"
    return None


def _element_problem(element: dict[str, Any]) -> str | None:
    if len(element.get("action_id", "")) > 255:
        return "action_id too long"
    if element.get("type") == "button":
        if len(element["text"]["text"]) > 75 or len(element.get("value", "")) > 2000:
            return "bad button"
        dialog = element.get("confirm")
        if dialog and (len(dialog["title"]["text"]) > 100 or len(dialog["text"]["text"]) > 300
                       or len(dialog["confirm"]["text"]) > 30 or len(dialog["deny"]["text"]) > 30):
            return "bad confirm"
    elif element.get("type") == "static_select":
        options = element.get("options", [])
        if not 1 <= len(options) <= 100 or any(len(o["value"]) > 150 or len(o["text"]["text"]) > 75 for o in options):
            return "bad select"
    return None
