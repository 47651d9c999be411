"""What Slack listeners get from labbot, injected into Bolt's context by one middleware as ``deps``.

Only long-lived objects go here (the service, settings, the task set); never an open database session, because
Bolt runs the listener after every middleware has returned.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from bot.metrics import Metrics
from bot.slack.background import Background
from bot.slack.class_board import ClassBoard
from config.profiles import LabProfile
from config.settings import Settings
from services.db import utcnow
from services.errors import ConflictError, PermissionDeniedError
from services.i18n import _
from services.labs.service import Actor, LabService
from services.labs.views import LabView

log = logging.getLogger(__name__)


@dataclass
class SlackDeps:
    """labbot's side of every Slack request."""

    service: LabService
    settings: Settings
    profiles: Mapping[str, LabProfile]
    metrics: Metrics
    background: Background
    now: Callable[[], datetime] = utcnow
    class_board: ClassBoard | None = None

    def actor(self, user_id: str) -> Actor:
        """The Slack user as the service sees them."""
        return Actor(user_id, is_admin=self.service.is_admin(user_id))

    def check_channel(self, channel_id: str | None) -> None:
        """Refuse channels and DMs labbot is not enabled in (``LABBOT_ALLOWED_CHANNELS``). The App Home (no
        channel) shows and acts on one's own labs; creating from it is ``check_create_place``'s business."""
        allowed = self.settings.allowed_channels
        if not allowed or channel_id is None or channel_id in allowed:
            return
        raise PermissionDeniedError(
            _("labbot does not work in this conversation; use {shown}").format(shown=_shown(allowed))
        )

    def check_create_place(self, channel_id: str | None) -> None:
        """Where a lab may be created: an allowed channel; with ``LABBOT_ALLOWED_CHANNELS`` set, not the App
        Home (a lab created there would have no allowed place of origin)."""
        self.check_channel(channel_id)
        allowed = self.settings.allowed_channels
        if allowed and channel_id is None:
            raise PermissionDeniedError(
                _("labs are created in {shown}: type `/lab create` there").format(shown=_shown(allowed))
            )

    async def current_lab(self, lab_id: int, name: str) -> LabView:
        """The lab a button names, refusing a card that outlived its lab (a new lab may have taken the name)."""
        lab = await self.service.status(name)
        if lab.id != lab_id:
            raise ConflictError(
                _(
                    "that card is for an earlier lab called `{name}`, which is gone; `/lab "
                    "status {name}` shows the current one"
                ).format(name=name)
            )
        return lab


def _shown(channels: list[str]) -> str:
    return ", ".join(f"<#{c}>" for c in channels[:5])


def name_for_delivery(trigger_id: str) -> str:
    """A lab name derived from the request, so a duplicate delivery of a nameless create hits the same name.

    The service refuses a second live lab with one name, so a repeated delivery can never build a second lab,
    even when it reaches another replica.
    """
    digest = hashlib.sha256(trigger_id.encode()).hexdigest()
    letters = "".join(chr(ord("a") + int(c, 16) % 26) for c in digest[:6])
    return f"lab-{letters}"
