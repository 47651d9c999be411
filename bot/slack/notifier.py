"""The Slack notifier: one live card per lab, updated in place, with details in its thread.

``notify`` never does I/O and never raises: it records what changed and wakes the lab's outbox
(``bot.slack.outbox``), which posts the card once, then coalesces every change into at most one chat.update per
lab every ``min_interval`` seconds, rendering the lab as it is at send time, so the last state always lands
however many progress events there were. Step failures, the build report and the audit trail go in the card's
thread; health changes, expiry warnings and "expired, destroying" go to the card's channel; orphan reports to
the labs channel. The owner also gets what they must not miss privately, in their DM with the app: ready,
failed, and the expiry warning (unless the card itself is in that DM).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.card import CardNote
from bot.blocks.kit import Message
from bot.blocks.lab_files import (
    FileShare,
    build_capture_share,
    build_capture_summary,
    build_picture_share,
    build_picture_text,
)
from bot.blocks.notices import (
    build_expired,
    build_expiry_warning,
    build_health_changed,
    build_orphans_found,
    build_owner_failed,
    build_owner_ready,
    build_warning_retired,
)
from bot.blocks.thread import build_audit_note, build_build_report, build_lab_error, build_step_failure
from bot.picture import PictureUnavailable, render_png
from bot.slack.outbox import NETWORK_BACKOFF, CardOutbox, ChannelOutbox, Deferred, LabReader
from bot.slack.pacing import SlackPacer
from services.capture.service import CaptureReport
from services.db import utcnow
from services.i18n import N_, Texts, _, default_language, use_language
from services.labs.notifier import Notice, NoticeKind, OrphanReport
from services.labs.picture import LabPicture
from services.labs.views import LabView

log = logging.getLogger(__name__)


_AUDITED = Texts({
    NoticeKind.EXTENDED: N_("extended the lab"),
    NoticeKind.RETRYING: N_("asked to retry the lab"),
    NoticeKind.DESTROYING: N_("asked to destroy the lab"),
})
_WARNING = "expiry_warning"  # the outbox keeps the lab's expiry warnings under this name, to retire them
_NOTE = Texts({
    NoticeKind.EXTENDED: N_("Extended"),
    NoticeKind.RETRYING: N_("Retry requested"),
    NoticeKind.DESTROYING: N_("Destroy requested"),
})


class SlackNotifier:
    """services.labs.notifier.Notifier for Slack (see the module docstring)."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        labs: LabReader,
        default_channel: str | None = None,
        min_interval: float = 2.0,
        pacer: SlackPacer | None = None,
        now: Callable[[], datetime] = utcnow,
        network_backoff: tuple[float, ...] = NETWORK_BACKOFF,
    ) -> None:
        self.client = client
        self.labs = labs
        self.default_channel = default_channel
        self.min_interval = min_interval
        self.pacer = pacer or SlackPacer()
        self.now = now
        self.network_backoff = network_backoff
        self._outboxes: dict[int, CardOutbox] = {}
        self._platform: ChannelOutbox | None = None  # news about the lab platform itself: no lab, no card

    async def notify(self, notice: Notice) -> None:
        """Record one notice for Slack; the lab's outbox sends it in the background. Never raises.

        A warm-pool lab nobody has claimed yet has no audience: its card is posted when someone claims it."""
        if notice.lab.pool:
            return
        try:
            # Cards, threads and channel notices are read by many: LABBOT_LANGUAGE, not the language of the person
            # whose request made the notice (the outbox tasks started here keep this context).
            with use_language(default_language()):
                self._accept(notice)
        except Exception:
            log.exception("Slack notifier could not take %s for lab %s", notice.kind, notice.lab.name)

    async def flush(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until every card and queued message has been sent (shutdown, tests)."""
        async with asyncio.timeout(timeout):
            for outbox in self._all_outboxes():
                await outbox.idle()

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Send what is pending (within ``timeout``), then stop every outbox."""
        try:
            await self.flush(timeout)
        except TimeoutError:
            log.warning("Slack notifier closed with unsent card updates")
        for outbox in self._all_outboxes():
            await outbox.stop()

    def _all_outboxes(self) -> list[ChannelOutbox]:
        platform = [self._platform] if self._platform is not None else []
        return [*self._outboxes.values(), *platform]

    def outbox(self, lab: LabView) -> CardOutbox:
        """The lab's outbox, created on first use (adopting a card a previous run already posted)."""
        outbox = self._outboxes.get(lab.id)
        if outbox is None:
            channel = lab.channel or self.default_channel or lab.owner  # an owner's id: a DM from the app
            fallbacks = tuple(c for c in (self.default_channel, lab.owner) if c)
            outbox = CardOutbox(lab=lab, channel=channel, client=self.client, labs=self.labs, pacer=self.pacer,
                                min_interval=self.min_interval, now=self.now,
                                network_backoff=self.network_backoff, fallbacks=fallbacks)
            self._outboxes[lab.id] = outbox
        return outbox

    @staticmethod
    def _warning(lab: LabView, notice: Notice, at: datetime) -> Message:
        """The expiry warning from the notice's details (its text is the console's, with UTC times)."""
        details = notice.details
        if "extendable" in details:
            limit = details.get("max_expires_at")
            return build_expiry_warning(lab, now=at, extendable=bool(details["extendable"]),
                                        max_expires_at=limit if isinstance(limit, datetime) else None)
        return build_expiry_warning(lab, now=at, detail=notice.text)

    @staticmethod
    def _tell_owner(outbox: CardOutbox, lab: LabView, message: Message, keep: str | None = None) -> None:
        """Send the owner ``message`` in their DM with the app, unless the card already lives there."""
        if outbox.channel.startswith("D") or outbox.channel == lab.owner or lab.owner == "labbot":
            return
        outbox.post_to_channel(message, channel=lab.owner, keep=keep)

    def _picture(self, lab_id: int, picture: LabPicture | None = None) -> Deferred:
        """The lab's picture for its thread, drawn when its turn comes (the text tree if Graphviz cannot)."""

        async def make() -> Message | FileShare:
            facts = picture if picture is not None else await self.labs.picture_of(lab_id)
            try:
                png = await asyncio.to_thread(render_png, facts)
            except PictureUnavailable as err:
                return build_picture_text(facts, str(err))
            return build_picture_share(facts, png)

        return make

    async def report_orphans(self, report: OrphanReport) -> None:
        """Post an orphan report in the labs channel (admins read it there); never raises."""
        channel = report.channel or self.default_channel
        if not channel:
            return
        try:
            with use_language(default_language()):
                message = build_orphans_found(report.text, report.resources)
                if self._platform is None:
                    self._platform = ChannelOutbox(name="the lab platform", channel=channel, client=self.client,
                                                   pacer=self.pacer, network_backoff=self.network_backoff)
                self._platform.post_to_channel(message, channel=channel)
        except Exception:
            log.exception("Slack notifier could not take an orphan report")

    def _accept(self, notice: Notice) -> None:
        lab = notice.lab
        outbox = self.outbox(lab)
        outbox.changed(lab)
        at = self.now()
        match notice.kind:
            case NoticeKind.STEP_FAILED if notice.step is not None:
                outbox.post_in_thread(build_step_failure(lab, notice.step))
            case NoticeKind.STEP_NOTE:
                outbox.post_in_thread(build_audit_note(lab, actor="labbot", what=notice.text, at=at))
            case NoticeKind.READY:
                outbox.post_in_thread(build_build_report(lab))
                outbox.post_in_thread(self._picture(lab.id))
                self._tell_owner(outbox, lab, build_owner_ready(lab, card_in=outbox.channel))
            case NoticeKind.PICTURE:
                outbox.post_in_thread(self._picture(lab.id, notice.details.get("picture")))  # type: ignore[arg-type]
            case NoticeKind.CAPTURED:
                report: CaptureReport = notice.details["capture"]  # type: ignore[assignment]
                outbox.post_in_thread(build_capture_summary(report, actor=notice.actor or "labbot"))
                outbox.post_in_thread(_read_capture(report))
            case NoticeKind.FAILED if not outbox.failure_posted:
                # A failure with no step failure before it (the platform refused the lab, say).
                outbox.post_in_thread(build_lab_error(lab))
            case NoticeKind.DESTROY_FAILED:
                outbox.post_in_thread(build_lab_error(lab))
            case NoticeKind.HEALTH_CHANGED:
                # The notice's text names the failing checks by id; the message says what they check.
                outbox.post_to_channel(build_health_changed(lab, now=at))
            case NoticeKind.EXPIRY_WARNING:
                warning = self._warning(lab, notice, at)
                outbox.post_to_channel(warning, keep=_WARNING)
                self._tell_owner(outbox, lab, warning, keep=_WARNING)
            case kind if kind in _AUDITED:
                actor = notice.actor or "labbot"
                what = _AUDITED[kind]
                if kind == NoticeKind.DESTROYING and notice.details.get("reason") == "expired":
                    what += _(" because it expired")
                    outbox.post_to_channel(build_expired(lab))
                if kind == NoticeKind.EXTENDED:
                    # a date token in the thread
                    what += _(" until {expires_at:%Y-%m-%d %H:%M} UTC").format(expires_at=lab.expires_at)
                    if notice.text:
                        what += f" {notice.text}"
                    outbox.replace_kept(_WARNING, build_warning_retired(lab, outcome="extended", actor=actor))
                elif kind == NoticeKind.DESTROYING:
                    outbox.replace_kept(_WARNING, build_warning_retired(lab, outcome="destroyed", actor=actor))
                outbox.note(CardNote(actor=actor, what=_NOTE[kind], at=at))
                outbox.post_in_thread(build_audit_note(lab, actor=actor, what=what, at=at))
        if notice.kind == NoticeKind.FAILED:
            self._tell_owner(outbox, lab, build_owner_failed(lab, card_in=outbox.channel))
        if notice.kind == NoticeKind.STEP_FAILED:
            outbox.failure_posted = True
        elif notice.kind in (NoticeKind.RETRYING, NoticeKind.STEP_STARTED):
            outbox.failure_posted = False


def _read_capture(report: CaptureReport) -> Deferred:
    """The pcap for the thread, read when its turn comes (None if the lab's captures were removed meanwhile)."""

    async def make() -> FileShare | None:
        try:
            data = await asyncio.to_thread(report.path.read_bytes)
        except FileNotFoundError:
            log.warning("capture %s of lab %s is gone before it was posted", report.filename, report.lab.name)
            return None
        return build_capture_share(report, data[: report.spec.max_bytes])

    return make
