"""The lab card's buttons (also on the App Home and in private replies): extend, retry, health, logs, access,
destroy, and the cancel of a destroy confirmation.

Each button is its typed command: the listener acks, reads the button's typed value, builds the command
(``ExtendCommand``, ``RetryCommand``, ...) and runs it through ``services.dispatch.execute`` in a background task,
so a click and ``/lab <verb>`` reach the same verb and get the same words back. The card in the channel needs no
acknowledgement: the lifecycle's notice updates it (buttons that no longer apply disappear, and it says who did
what). A click in a private message replaces that message; a click on the App Home republishes it.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.ids import ExtendChoice, LabAction, LabRef, parse_value
from bot.blocks.replies import build_reply
from bot.slack.deps import SlackDeps
from bot.slack.reply import UserReply
from config.settings import parse_duration
from handlers.slack.create_modal import open_create_modal
from handlers.slack.home import publish_home
from services.commands import (
    AccessCommand,
    Command,
    DestroyCommand,
    ExtendCommand,
    HealthCommand,
    LogsCommand,
    RetryCommand,
)
from services.dispatch import ReplyKind, execute

log = logging.getLogger(__name__)

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
    """Extend by the duration picked in the menu: ``/lab extend NAME DURATION``."""
    await ack()
    choice = parse_value(ExtendChoice, (action.get("selected_option") or {}).get("value"))
    _run(deps, body, client, respond, choice, ExtendCommand(choice.name, parse_duration(choice.duration)))


async def handle_lab_retry_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                  client: AsyncWebClient, respond: AsyncRespond, deps: SlackDeps) -> None:
    """Retry a failed lab from its failed step: ``/lab retry NAME``."""
    await ack()
    ref = parse_value(LabRef, action.get("value"))
    _run(deps, body, client, respond, ref, RetryCommand(ref.name))


async def handle_lab_destroy_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                    client: AsyncWebClient, respond: AsyncRespond, deps: SlackDeps) -> None:
    """Destroy (Slack's confirm dialog, or the private confirmation, has already asked): ``/lab destroy NAME --yes``."""
    await ack()
    ref = parse_value(LabRef, action.get("value"))
    _run(deps, body, client, respond, ref, DestroyCommand(ref.name, yes=True))


async def handle_lab_health_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                   client: AsyncWebClient, respond: AsyncRespond, deps: SlackDeps) -> None:
    """Run the health checks now and show the report privately: ``/lab health NAME``."""
    await ack()
    ref = parse_value(LabRef, action.get("value"))
    _run(deps, body, client, respond, ref, HealthCommand(ref.name))


async def handle_lab_logs_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                 client: AsyncWebClient, respond: AsyncRespond, deps: SlackDeps) -> None:
    """Show the steps' output tails privately: ``/lab logs NAME``."""
    await ack()
    ref = parse_value(LabRef, action.get("value"))
    _run(deps, body, client, respond, ref, LogsCommand(ref.name))


async def handle_lab_access_action(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                                   client: AsyncWebClient, respond: AsyncRespond, deps: SlackDeps) -> None:
    """Show how to reach the lab, credentials included, privately (a DM from the App Home): ``/lab access NAME``."""
    await ack()
    ref = parse_value(LabRef, action.get("value"))
    _run(deps, body, client, respond, ref, AccessCommand(ref.name))


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


# Answers that are the point of the click (shown privately wherever it came from); the others only acknowledge
# a change the lab's card shows anyway, so they replace a private message and are not repeated on the card.
_PRIVATE_ANSWERS = frozenset({ReplyKind.HEALTH, ReplyKind.LOGS, ReplyKind.ACCESS})


def _run(deps: SlackDeps, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond, ref: LabRef,
         command: Command) -> None:
    """Check the channel, then run the typed command's verb in the background and answer where the click was."""
    reply = UserReply.from_body(body, client, respond)
    deps.check_channel(reply.channel_id)
    container = body.get("container") or {}

    async def run() -> None:
        await deps.current_lab(ref.lab_id, ref.name)
        result = await execute(command, actor=deps.actor(reply.user_id), service=deps.service,
                               channel=reply.channel_id)
        answer = build_reply(result, now=deps.now())
        if result.kind in _PRIVATE_ANSWERS:
            await reply.send(answer)
        elif container.get("is_ephemeral") and container.get("type") != "view":
            await reply.send(answer, replace_original=True)
        if container.get("type") == "view":
            await publish_home(client, deps, reply.user_id)

    deps.background.spawn(run(), reply=reply, what=f"action:{type(command).__name__.removesuffix('Command').lower()}")
