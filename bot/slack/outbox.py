"""One lab's outbox: the card post, coalesced card updates, thread replies and channel notices, in order.

A small worker task runs while the outbox has work and ends when it is idle. It posts the card first (and
remembers it with ``set_progress_ref``), then thread replies and channel notices in the order they came, and
turns any number of changes into one chat.update at most every ``min_interval`` seconds, rendered from a fresh
view of the lab. Slack's 429s are waited out (Retry-After) and retried, so the final state is never lost;
other Slack errors are logged and dropped, because a message must never fail or stall a lab.

chat.postMessage is not idempotent: when the answer to the card's post is lost (a timeout, a dropped
connection), the card may or may not exist. The card carries message metadata naming its lab, so before
posting again the outbox looks for it in the channel's recent history (``conversations.history``) and adopts
it; only when it is not there (or history cannot be read) does it post again.

When Slack refuses the card because labbot cannot post in the lab's conversation (``channel_not_found``,
``not_in_channel``: a lab created before labbot checked, or labbot was removed since), the card moves to the next
of ``fallbacks`` (the labs channel, then the owner's DM), and the thread and channel notices follow it, so the
lab's failures and its expiry warning still reach someone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.card import CardNote, build_lab_card
from bot.blocks.kit import Message
from bot.blocks.lab_files import FileShare
from bot.slack.pacing import SlackPacer
from services.errors import StaleWriteError
from services.labs.picture import LabPicture
from services.labs.views import LabView

# A thread item made only when its turn comes (a picture drawn, a pcap read), so the notifier never waits.
Deferred = Callable[[], Awaitable[Message | FileShare | None]]
ThreadItem = Message | FileShare | Deferred

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 30
NETWORK_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)
CARD_EVENT = "labbot_card"  # message metadata event_type of a lab's card
HISTORY_LOOKBACK = 100  # recent channel messages searched for a card whose post answer was lost
_CARD_GONE = {"message_not_found", "cant_update_message", "channel_not_found", "is_archived", "not_in_channel"}
_CANNOT_POST = {"channel_not_found", "not_in_channel", "is_archived"}


def retry_after(err: SlackApiError) -> float:
    """Seconds Slack asked us to wait (``Retry-After``), 1 when it did not say."""
    for key, value in (err.response.headers or {}).items():
        if key.lower() == "retry-after":
            with contextlib.suppress(ValueError):
                return max(float(value), 0.0)
    return 1.0


class LabReader(Protocol):
    """What the outbox needs from the lab service: a fresh view, and where to remember the card."""

    async def view(self, lab_id: int) -> LabView:
        """A fresh snapshot of one lab."""

    async def set_progress_ref(self, lab_id: int, ref: str) -> None:
        """Remember the card's ``channel:ts``."""

    async def picture_of(self, lab_id: int) -> LabPicture:
        """The lab's picture facts (posted in its thread when it is ready)."""


class ChannelOutbox:
    """Messages labbot still has to post in channels (and kept ones to edit), sent in order by one worker task.

    The base of a lab's ``CardOutbox``; on its own it carries news about the lab platform (orphan reports), which
    belongs to no lab and has no card.
    """

    def __init__(
        self,
        *,
        name: str,
        channel: str,
        client: AsyncWebClient,
        pacer: SlackPacer,
        network_backoff: tuple[float, ...] = NETWORK_BACKOFF,
    ) -> None:
        self.name = name  # what the logs call it: "lab NAME", "the lab platform"
        self.channel = channel
        self._client, self._pacer = client, pacer
        self._backoff = network_backoff
        self._channel_posts: deque[tuple[Message, str | None, str | None]] = deque()
        self._kept: dict[str, list[tuple[str, str]]] = {}  # tag → (channel, ts) of messages to edit later
        self._edits: deque[tuple[str, str, Message]] = deque()
        self._last_error: str | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def post_to_channel(self, message: Message, *, channel: str | None = None, keep: str | None = None) -> None:
        """Queue a message in this outbox's channel (wherever it is by then), or in another one; ``keep`` names it
        so ``replace_kept`` can edit it later (expiry warnings, once they no longer hold)."""
        self._channel_posts.append((message, channel, keep))
        self._kick()

    def replace_kept(self, keep: str, message: Message) -> None:
        """Edit every message posted so far under ``keep`` into ``message`` (and forget them)."""
        for channel, ts in self._kept.pop(keep, []):
            self._edits.append((channel, ts, message))
        # Those still queued are sent already replaced: nobody needs to see a warning that no longer holds.
        self._channel_posts = deque((message if tag == keep else m, c, tag) for m, c, tag in self._channel_posts)
        self._kick()

    async def idle(self) -> None:
        """Return once everything queued so far has been sent (or given up on)."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Stop the worker (pending work is dropped)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._idle.set()

    # --- the worker -------------------------------------------------------------------------------------

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"slack-outbox:{self.name}")

    def _has_work(self) -> bool:
        return bool(self._channel_posts or self._edits)

    def _drop_pending(self) -> None:
        self._channel_posts.clear()
        self._edits.clear()

    async def _run(self) -> None:
        try:
            while await self._step():
                pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Slack outbox of %s crashed; its pending messages are dropped", self.name)
            self._drop_pending()
        finally:
            if not self._has_work():
                self._idle.set()

    async def _step(self) -> bool:
        """Do the next piece of work; False when there is none left."""
        self._wake.clear()
        if self._channel_posts:
            message, channel, keep = self._channel_posts.popleft()
            data = await self._send("chat.postMessage", channel or self.channel, **message.as_kwargs())
            if keep and data and data.get("ts"):
                self._kept.setdefault(keep, []).append((str(data["channel"]), str(data["ts"])))
            return True
        if self._edits:
            channel, ts, message = self._edits.popleft()
            await self._send("chat.update", channel, ts=ts, **message.as_kwargs())
            return True
        return False

    async def _send(self, method: str, channel: str, *,
                    recover: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None,
                    **kwargs: Any) -> dict[str, Any] | None:
        """Call Slack, waiting for the pacer and for Retry-After; None when Slack refused or never answered.

        After a network failure the call may have happened anyway; ``recover`` finds its result, if it did,
        before the call is repeated.
        """
        self._last_error = None
        network_failures = 0
        for _ in range(MAX_ATTEMPTS):
            if method == "chat.update":
                await self._pacer.update_slot()
            else:
                await self._pacer.post_slot(channel)
            try:
                if method == "chat.update":
                    response = await self._client.chat_update(channel=channel, **kwargs)
                else:
                    response = await self._client.chat_postMessage(channel=channel, **kwargs)
                return dict(response.data) if isinstance(response.data, dict) else {}
            except SlackApiError as err:
                if err.response.status_code == 429:
                    self._pacer.rate_limited(method, retry_after(err), channel)
                    continue
                self._last_error = str(err.response.get("error", "unknown"))
                log.warning("Slack refused %s for %s: %s", method, self.name, self._last_error)
                return None
            except (aiohttp.ClientError, TimeoutError) as err:
                if network_failures >= len(self._backoff):
                    break
                delay = self._backoff[network_failures]
                network_failures += 1
                log.warning("Slack unreachable for %s of %s (%s); retrying in %.1fs", method, self.name,
                            type(err).__name__, delay)
                await asyncio.sleep(delay)
                if recover is not None and (found := await recover(channel)) is not None:
                    return found
        self._last_error = "gave_up"
        log.error("gave up sending %s for %s", method, self.name)
        return None


class CardOutbox(ChannelOutbox):
    """Everything labbot still has to send to Slack about one lab: its card, its thread, its channel notices."""

    def __init__(
        self,
        *,
        lab: LabView,
        channel: str,
        client: AsyncWebClient,
        labs: LabReader,
        pacer: SlackPacer,
        min_interval: float,
        now: Callable[[], datetime],
        network_backoff: tuple[float, ...] = NETWORK_BACKOFF,
        fallbacks: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name=f"lab {lab.name}", channel=channel, client=client, pacer=pacer,
                         network_backoff=network_backoff)
        self.lab_id = lab.id
        self._fallbacks = [c for c in fallbacks if c and c != channel]
        self.latest = lab
        self.ts: str | None = None
        if lab.progress_ref and ":" in lab.progress_ref:
            self.channel, self.ts = lab.progress_ref.split(":", 1)
        self.failure_posted = False
        self._labs = labs
        self._min_interval, self._now = min_interval, now
        self._dirty = False
        self._note: CardNote | None = None
        self._thread: deque[ThreadItem] = deque()
        self._last_update = float("-inf")
        self._reposted = False

    # --- what the notifier tells it ---------------------------------------------------------------------

    def changed(self, lab: LabView) -> None:
        """The lab changed: the card needs an update (coalesced)."""
        self.latest = lab
        self._dirty = True
        self._kick()

    def note(self, note: CardNote) -> None:
        """Show who did what at the foot of the card."""
        self._note = note
        self._dirty = True
        self._kick()

    def post_in_thread(self, message: ThreadItem) -> None:
        """Queue a reply in the card's thread."""
        self._thread.append(message)
        self._kick()

    # --- the worker: the card first, then its thread, channel notices, edits, and the coalesced update ------

    def _has_work(self) -> bool:
        return self._dirty or bool(self._thread) or super()._has_work()

    def _drop_pending(self) -> None:
        super()._drop_pending()
        self._thread.clear()
        self._dirty = False

    async def _step(self) -> bool:
        self._wake.clear()
        if self.ts is None and (self._dirty or self._thread):
            await self._post_card()
            return True
        if self._thread:
            item = self._thread.popleft()
            if self.ts is not None:
                await self._thread_item(item)
            return True
        if await super()._step():
            return True
        if self._dirty:
            wait = self._last_update + self._min_interval - time.monotonic()
            if wait > 0:
                # Coalesce: let more changes (and thread posts) arrive until the interval has passed.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                return True
            await self._update_card()
            return True
        return False

    async def _thread_item(self, item: ThreadItem) -> None:
        if callable(item):
            try:
                made = await item()
            except Exception:
                log.exception("could not make a thread item for %s; skipped", self.name)
                return
            if made is None:
                return
            item = made
        if isinstance(item, FileShare):
            await self._upload(item)
        else:
            await self._send("chat.postMessage", self.channel, thread_ts=self.ts, **item.as_kwargs())

    async def _upload(self, share: FileShare) -> None:
        """Share a file in the card's thread with Slack's upload flow (files.getUploadURLExternal, a POST of the
        bytes to the URL it gives, files.completeUploadExternal); waits out 429s like messages do."""
        for _ in range(MAX_ATTEMPTS):
            await self._pacer.post_slot(self.channel)
            try:
                await self._client.files_upload_v2(
                    filename=share.filename, content=share.data, title=share.title, alt_txt=share.alt_txt,
                    snippet_type=share.snippet_type, channel=self.channel, thread_ts=self.ts,
                    initial_comment=share.comment)
                return
            except SlackApiError as err:
                if err.response.status_code == 429:
                    await asyncio.sleep(retry_after(err))  # files.* have their own limits; the pacer is for chat.*
                    continue
                log.warning("Slack refused the file %s for %s: %s", share.filename, self.name,
                            err.response.get("error", "unknown"))
                return
            except Exception as err:  # the upload URL's POST (SlackRequestError), the network
                # Not retried: the file may already be shared, and a thread with the same file twice is worse.
                log.warning("could not upload %s for %s: %s", share.filename, self.name, err)
                return
        log.error("gave up uploading %s for %s", share.filename, self.name)

    async def _post_card(self) -> None:
        lab = await self._fresh()
        self._dirty = False
        self._last_update = time.monotonic()
        metadata = {"event_type": CARD_EVENT, "event_payload": {"lab_id": str(self.lab_id)}}
        data = await self._send("chat.postMessage", self.channel, recover=self._find_card, metadata=metadata,
                                **self._render(lab).as_kwargs())
        while data is None and self._last_error in _CANNOT_POST and self._fallbacks:
            refused, self.channel = self.channel, self._fallbacks.pop(0)
            log.warning("labbot cannot post the card of %s in %s (%s); posting it in %s instead", self.name,
                        refused, self._last_error, self.channel)
            data = await self._send("chat.postMessage", self.channel, recover=self._find_card, metadata=metadata,
                                    **self._render(lab).as_kwargs())
        if data is None:
            log.error("could not post the card of %s in %s; its thread messages are dropped", self.name,
                      self.channel)
            self._thread.clear()
            self.ts = None
            return
        self.channel, self.ts = str(data["channel"]), str(data["ts"])
        for attempt in range(5):
            try:
                await self._labs.set_progress_ref(self.lab_id, f"{self.channel}:{self.ts}")
                return
            except StaleWriteError:
                # The engine wrote the lab at the same moment (optimistic lock); the reference is worth a retry.
                await asyncio.sleep(0.05 * (attempt + 1))
            except Exception:
                log.exception("could not remember the card of %s", self.name)
                return
        log.error("could not remember the card of %s: the lab kept changing", self.name)

    async def _update_card(self) -> None:
        self._dirty = False
        lab = await self._fresh()
        self._last_update = time.monotonic()
        data = await self._send("chat.update", self.channel, ts=self.ts, **self._render(lab).as_kwargs())
        if data is None and self._last_error in _CARD_GONE and not self._reposted:
            log.warning("the card of %s is gone (%s); posting a new one", self.name, self._last_error)
            self._reposted, self.ts, self._dirty = True, None, True

    async def _find_card(self, channel: str) -> dict[str, Any] | None:
        """This lab's card in the channel's recent history ({channel, ts}), or None (not there, or unreadable)."""
        try:
            response = await self._client.conversations_history(channel=channel, limit=HISTORY_LOOKBACK,
                                                                include_all_metadata=True)
        except SlackApiError as err:  # missing_scope (channels:history), not_in_channel ...
            reason = str(err.response.get("error", "unknown"))
        except (aiohttp.ClientError, TimeoutError) as err:
            reason = type(err).__name__
        else:
            for message in response.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == CARD_EVENT and payload.get("lab_id") == str(self.lab_id):
                    log.info("the card of %s was posted although its answer was lost; adopting it", self.name)
                    return {"channel": channel, "ts": message["ts"]}
            return None
        log.warning("could not look for the card of %s in %s's history (%s); posting it again", self.name,
                    channel, reason)
        return None

    def _render(self, lab: LabView) -> Message:
        return build_lab_card(lab, now=self._now(), note=self._note)

    async def _fresh(self) -> LabView:
        """The lab as it is now (the newest notice may already be stale); the last notice's view if that fails."""
        try:
            self.latest = await self._labs.view(self.lab_id)
        except Exception:
            log.warning("could not read %s for its card; using the last notice", self.name, exc_info=True)
        return self.latest
