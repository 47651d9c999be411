"""The class overview in Slack: one message per class in the trainer's DM with labbot, kept up to date.

``show`` posts the overview (or edits the one already posted: its reference is kept with the class, so it
survives restarts); afterwards every notice about a lab of the class schedules a refresh of that message, at
most one ``chat.update`` per class per ``min_interval`` and always ending on the latest state (coalesced like
lab cards). The trainer's expiry reminder for the class also goes to that DM, and each student gets their lab's access
details in their own DM with labbot when it is ready (or when they claim a ready one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.classroom import build_class_overview
from bot.blocks.details import build_access
from bot.blocks.replies import build_notice
from services.db import utcnow
from services.errors import LabbotError
from services.i18n import _
from services.labs.classes import ClassView
from services.labs.models import LabState
from services.labs.notifier import Notice, NoticeKind
from services.labs.service import Actor, LabService
from services.labs.views import LabView

log = logging.getLogger(__name__)


class ClassBoard:
    """Shows each class's overview in its trainer's DM and refreshes it when a lab of the class changes."""

    def __init__(self, *, client: AsyncWebClient, labs: LabService, min_interval: float = 5.0,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.labs = labs
        self.classes = labs.classes
        self.min_interval = min_interval
        self.now = now
        self._pending: dict[int, asyncio.Task[None]] = {}
        self._dirty: set[int] = set()

    async def show(self, cls: ClassView, *, user: str, text: str = "") -> None:
        """Post the overview to ``user``'s DM with labbot (or edit the class's message there) and keep it."""
        message = build_class_overview(cls, now=self.now(), text=text)
        channel, _, ts = (cls.status_ref or "").partition(":")
        if ts:
            try:
                await self.client.chat_update(channel=channel, ts=ts, **message.as_kwargs())
                return
            except SlackApiError as err:  # the old message was deleted: post a new one
                log.info("class %s overview could not be edited (%s); posting a new one", cls.name,
                         err.response.get("error"))
        answer = await self.client.chat_postMessage(channel=user, **message.as_kwargs())
        await self.classes.set_status_ref(cls.name, f"{answer['channel']}:{answer['ts']}")

    async def notify(self, notice: Notice) -> None:
        """A lab of a class changed: refresh its class's overview soon; a class reminder goes to the trainer."""
        class_id = notice.lab.class_id
        if class_id is None:
            return
        if notice.kind == NoticeKind.CLASS_EXPIRING:
            trainer = str(notice.details.get("trainer") or "")
            if trainer:
                await self.client.chat_postMessage(
                    channel=trainer, **build_notice(_(":hourglass: {text}").format(text=notice.text)).as_kwargs()
                )
        if (
            notice.kind in (NoticeKind.READY, NoticeKind.CLAIMED)
            and notice.lab.state == LabState.READY
            and not notice.lab.claimable
        ):
            await self._hand_out(notice.lab)
        if class_id in self._pending and not self._pending[class_id].done():
            self._dirty.add(class_id)
            return
        self._pending[class_id] = asyncio.create_task(self._refresh_loop(notice), name=f"class-board:{class_id}")

    async def _hand_out(self, lab: LabView) -> None:
        """A student's class lab is ready: their access details, privately, in their DM with labbot."""
        try:
            access = await self.labs.access(Actor(lab.owner), lab.name)
        except LabbotError as err:
            log.info("no access details for class lab %s: %s", lab.name, err.user_message)
            return
        await self.client.chat_postMessage(channel=lab.owner, **build_access(access).as_kwargs())

    async def _refresh_loop(self, notice: Notice) -> None:
        class_id = notice.lab.class_id
        assert class_id is not None
        while True:
            await asyncio.sleep(self.min_interval)
            self._dirty.discard(class_id)
            try:
                cls = await self.classes.of_lab(notice.lab)
                if cls is not None and cls.status_ref:
                    channel, _, ts = cls.status_ref.partition(":")
                    await self.client.chat_update(
                        channel=channel, ts=ts, **build_class_overview(cls, now=self.now()).as_kwargs()
                    )
            except Exception:
                log.exception("could not refresh the overview of class %s", class_id)
            if class_id not in self._dirty:
                return

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Let pending refreshes finish (up to ``timeout``), then cancel the rest."""
        tasks = [t for t in self._pending.values() if not t.done()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
