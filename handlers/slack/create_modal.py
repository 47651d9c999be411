"""The create-lab modal: opened by ``/lab create`` (no arguments) or the App Home's New lab button.

A submission with bad fields is answered inside Slack's 3 seconds with errors next to the fields; a good one is
acked (closing the modal) and the lab is created in the background, its card appearing in the channel.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.ids import CreateModalMeta, ViewId, parse_value
from bot.blocks.modal import CreateForm, build_create_modal, parse_create_form
from bot.blocks.replies import build_created
from bot.slack.conversations import card_place
from bot.slack.deps import SlackDeps, name_for_delivery
from bot.slack.reply import UserReply

log = logging.getLogger(__name__)


def register(app: AsyncApp) -> None:
    """Listen for the modal's submission."""
    app.view(ViewId.CREATE_LAB)(handle_create_lab_submission)


async def open_create_modal(client: AsyncWebClient, deps: SlackDeps, *, trigger_id: str,
                            channel_id: str | None) -> None:
    """Open the modal (the trigger id is only good for about 3 seconds, so this runs right after the ack)."""
    view = build_create_modal(profiles=deps.profiles, default_profile=deps.settings.default_profile,
                              meta=CreateModalMeta(channel_id=channel_id))
    await client.views_open(trigger_id=trigger_id, view=view)


async def handle_create_lab_submission(
    ack: AsyncAck,
    body: dict[str, Any],
    view: dict[str, Any],
    client: AsyncWebClient,
    deps: SlackDeps,
) -> None:
    """Validate the form within the ack; create the lab after it."""
    form = parse_create_form(view.get("state", {}).get("values", {}), deps.profiles)
    if isinstance(form, dict):
        deps.metrics.command("form:create", "rejected")
        await ack(response_action="errors", errors=form)
        return
    await ack()
    meta = parse_value(CreateModalMeta, view.get("private_metadata"))
    reply = UserReply(user_id=str(body["user"]["id"]), client=client, channel_id=meta.channel_id)
    key = f"{view.get('id', '')}:{view.get('hash', '')}:{body.get('trigger_id', '')}"
    deps.background.spawn(create_from_form(form, deps=deps, reply=reply, delivery=key), reply=reply,
                          what="form:create")


async def create_from_form(form: CreateForm, *, deps: SlackDeps, reply: UserReply, delivery: str) -> None:
    """Create the lab the form describes; when its card goes elsewhere than where the form came from, say where."""
    deps.check_create_place(reply.channel_id)
    place = await card_place(reply.client, origin=reply.channel_id, user_id=reply.user_id,
                             labs_channel=deps.settings.channel)
    lab = await deps.service.create(deps.actor(reply.user_id), name=form.name or name_for_delivery(delivery),
                                    profile=form.profile, ttl=form.ttl, channel=place.channel)
    if place.elsewhere:
        await reply.send(build_created(lab.name, card_in=place.channel))
