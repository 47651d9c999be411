"""The lab card's buttons (also on the App Home and in private replies): extend, retry, health, logs, access,
destroy, and the cancel of a destroy confirmation.

Each listener acks, reads the button's typed value, and hands one service call to a background task. The card
in the channel needs no answer: the service's notice updates it (buttons that no longer apply disappear, and it
says who did what). A click in a private message replaces that message; a click on the App Home republishes it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.details import build_access, build_health
from bot.blocks.ids import ExtendChoice, LabAction, LabRef, parse_value
from bot.blocks.kit import Message
from bot.blocks.replies import build_logs, build_notice
from bot.slack.deps import SlackDeps
from bot.slack.reply import UserReply
from config.settings import parse_duration
from handlers.slack.create_modal import open_create_modal
from handlers.slack.home import publish_home

log = logging.getLogger(__name__)

Work = Callable[[SlackDeps, UserReply, LabRef], Awaitable[Message | None]]


def register(app: AsyncApp) -> None:
    """Listen for every lab button."""
    app.action(LabAction.EXTEND)(handle_lab_extend_action)
    app.action(LabAction.RETRY)(handle_lab_retry_action)
    app.action(LabAction.DESTROY)(handle_lab_destroy_action)
    app.action(LabAction.HEALTH)(handle_lab_health_action)
    app.action(LabAction.LOGS)(handle_lab_logs_action)
    app.action(LabAction.ACCESS)(handle_lab_access_action)
    app.action(LabAction.CANCEL)(handle_lab_cancel_action)
    app.action(LabAction.OPEN_CREATE)(handle_lab_open_create_action)


async def handle_lab_extend_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                   client: AsyncWebClient, respond: AsyncRespond, deps: SlackDeps) -> None:
    """Extend by the duration picked in the menu."""
    await ack()
    choice = parse_value(ExtendChoice, (action.get("selected_option") or {}).get("value"))

    async def extend(deps: SlackDeps, reply: UserReply, ref: LabRef) -> Message:
        await deps.current_lab(ref.lab_id, ref.name)
        lab = await deps.service.extend(deps.actor(reply.user_id), ref.name, parse_duration(choice.duration))
        return build_notice(f"Lab {lab.name} now expires {lab.expires_at:%Y-%m-%d %H:%M} UTC.")

    _start(deps, body, client, respond, choice, extend, "extend")


async def handle_lab_retry_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                  client: AsyncWebClient, respond: AsyncRespond, deps: SlackDeps) -> None:
    """Retry a failed lab from its failed step."""
    await ack()

    async def retry(deps: SlackDeps, reply: UserReply, ref: LabRef) -> Message:
        await deps.current_lab(ref.lab_id, ref.name)
        lab = await deps.service.retry(deps.actor(reply.user_id), ref.name)
        return build_notice(f"Retrying lab {lab.name}…")

    _start(deps, body, client, respond, parse_value(LabRef, action.get("value")), retry, "retry")


async def handle_lab_destroy_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                    client: AsyncWebClient, respond: AsyncRespond, deps: SlackDeps) -> None:
    """Destroy (Slack's confirm dialog, or the private confirmation, has already asked)."""
    await ack()

    async def destroy(deps: SlackDeps, reply: UserReply, ref: LabRef) -> Message:
        await deps.current_lab(ref.lab_id, ref.name)
        lab = await deps.service.destroy(deps.actor(reply.user_id), ref.name)
        return build_notice(f"Destroying lab {lab.name}…")

    _start(deps, body, client, respond, parse_value(LabRef, action.get("value")), destroy, "destroy")


async def handle_lab_health_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                   client: AsyncWebClient, respond: AsyncRespond, deps: SlackDeps) -> None:
    """Run the health checks now and show the report privately."""
    await ack()

    async def health(deps: SlackDeps, reply: UserReply, ref: LabRef) -> None:
        await deps.current_lab(ref.lab_id, ref.name)
        report = await deps.service.health(deps.actor(reply.user_id), ref.name)
        await reply.send(build_health(report, now=deps.now()))

    _start(deps, body, client, respond, parse_value(LabRef, action.get("value")), health, "health")


async def handle_lab_logs_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                 client: AsyncWebClient, respond: AsyncRespond, deps: SlackDeps) -> None:
    """Show the steps' output tails privately."""
    await ack()

    async def logs(deps: SlackDeps, reply: UserReply, ref: LabRef) -> None:
        await deps.current_lab(ref.lab_id, ref.name)
        await reply.send(build_logs(ref.name, await deps.service.logs(deps.actor(reply.user_id), ref.name)))

    _start(deps, body, client, respond, parse_value(LabRef, action.get("value")), logs, "logs")


async def handle_lab_access_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                   client: AsyncWebClient, respond: AsyncRespond, deps: SlackDeps) -> None:
    """Show how to reach the lab, credentials included: ephemeral, or a DM when clicked on the App Home."""
    await ack()

    async def access(deps: SlackDeps, reply: UserReply, ref: LabRef) -> None:
        await deps.current_lab(ref.lab_id, ref.name)
        await reply.send(build_access(await deps.service.access(deps.actor(reply.user_id), ref.name)))

    _start(deps, body, client, respond, parse_value(LabRef, action.get("value")), access, "access")


async def handle_lab_cancel_action(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient,
                                   respond: AsyncRespond, deps: SlackDeps) -> None:
    """Keep the lab: remove the private destroy confirmation."""
    await ack()
    reply = UserReply.from_body(body, client, respond)
    deps.background.spawn(reply.delete_original(), reply=reply, what="action:cancel")


async def handle_lab_open_create_action(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient,
                                        deps: SlackDeps) -> None:
    """The App Home's New lab button: the same modal as ``/lab create``."""
    await ack()
    reply = UserReply.from_body(body, client, None)

    async def open_from_home() -> None:
        deps.check_create_place(None)
        await open_create_modal(client, deps, trigger_id=str(body.get("trigger_id", "")), channel_id=None)

    deps.background.spawn(open_from_home(), reply=reply, what="action:open_create")


def _start(deps: SlackDeps, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond, ref: LabRef,
           work: Work, verb: str) -> None:
    """Check the channel, then run ``work`` in the background and show its answer where the click came from."""
    reply = UserReply.from_body(body, client, respond)
    deps.check_channel(reply.channel_id)
    container = body.get("container") or {}

    async def run() -> None:
        answer = await work(deps, reply, ref)
        if container.get("type") == "view":
            await publish_home(client, deps, reply.user_id)
        elif answer is not None and container.get("is_ephemeral"):
            await reply.send(answer, replace_original=True)

    deps.background.spawn(run(), reply=reply, what=f"action:{verb}")
