"""The App Home tab: published when a user opens it, and again after they act from it."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.home import build_home
from bot.slack.deps import SlackDeps

log = logging.getLogger(__name__)


def register(app: AsyncApp) -> None:
    """Listen for app_home_opened."""
    app.event("app_home_opened")(handle_app_home_opened_event)


async def handle_app_home_opened_event(event: dict[str, Any], client: AsyncWebClient, deps: SlackDeps) -> None:
    """Publish the Home tab in a tracked task (Bolt has already acked the event)."""
    if event.get("tab", "home") != "home":
        return
    deps.background.spawn(publish_home(client, deps, str(event["user"])), reply=None, what="event:app_home")


async def publish_home(client: AsyncWebClient, deps: SlackDeps, user_id: str) -> None:
    """Build and publish one user's Home tab: their labs, and for admins every lab and the next cleanups."""
    actor = deps.actor(user_id)
    mine = await deps.service.list_labs(actor)
    everyone = await deps.service.list_labs(actor, everything=True) if actor.is_admin else None
    pools = await deps.service.pool.status() if actor.is_admin else []
    view = build_home(user_id=user_id, my_labs=mine, all_labs=everyone, now=deps.now(), pools=pools)
    await client.views_publish(user_id=user_id, view=view)
