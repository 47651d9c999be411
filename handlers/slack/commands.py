"""``/lab …``: parse, ack within Slack's 3 seconds, then run the command in a tracked background task.

Parsing and the channel check are pure, so their errors and the help text go straight into the ack, privately.
Everything that touches the database runs after the ack.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.replies import build_error, build_help, build_notice, build_reply
from bot.slack.conversations import card_place
from bot.slack.deps import SlackDeps, name_for_delivery
from bot.slack.reply import UserReply
from handlers.slack.create_modal import open_create_modal
from services.commands import ClassCreateCommand, Command, CreateCommand, HelpCommand, help_text, parse_command
from services.dispatch import ReplyKind, execute
from services.errors import LabbotError
from services.i18n import _

log = logging.getLogger(__name__)

COMMAND = "/lab"


def register(app: AsyncApp) -> None:
    """Listen for the ``/lab`` slash command."""
    app.command(COMMAND)(handle_lab_command)


async def handle_lab_command(
    ack: AsyncAck,
    command: dict[str, Any],
    client: AsyncWebClient,
    respond: AsyncRespond,
    deps: SlackDeps,
) -> None:
    """Ack at once (with the error or help when there is nothing else to do), then work in the background."""
    text = str(command.get("text") or "")
    verb = _verb(text)
    try:
        parsed = parse_command(text)
        deps.check_channel(command.get("channel_id"))
    except LabbotError as err:
        deps.metrics.command(f"command:{verb}", "rejected")
        await ack(response_type="ephemeral", **build_error(err.user_message).as_kwargs())
        return
    if isinstance(parsed, HelpCommand):
        deps.metrics.command("command:help", "ok")
        await ack(response_type="ephemeral", **build_help(help_text(parsed.topic)).as_kwargs())
        return
    await ack()
    reply = UserReply.from_body(command, client, respond)
    trigger_id = str(command.get("trigger_id") or "")
    if isinstance(parsed, CreateCommand) and text.split() == ["create"]:
        work = open_create_modal(client, deps, trigger_id=trigger_id, channel_id=command.get("channel_id"))
        deps.background.spawn(work, reply=reply, what="command:create_form")
        return
    deps.background.spawn(run_lab_command(parsed, deps=deps, reply=reply, trigger_id=trigger_id),
                          reply=reply, what=f"command:{verb}")


async def run_lab_command(parsed: Command, *, deps: SlackDeps, reply: UserReply, trigger_id: str) -> None:
    """Carry out one parsed command and answer the person who typed it (privately: the card is the public part).

    A create first settles where the lab's card goes (``bot.slack.conversations``), so a lab nobody could see
    is refused before it exists.
    """
    channel = reply.channel_id
    if isinstance(parsed, CreateCommand | ClassCreateCommand):
        if isinstance(parsed, CreateCommand) and parsed.name is None and trigger_id:
            parsed = replace(parsed, name=name_for_delivery(trigger_id))
        place = await card_place(reply.client, origin=reply.channel_id, user_id=reply.user_id,
                                 labs_channel=deps.settings.channel)
        channel = place.channel
    result = await execute(parsed, actor=deps.actor(reply.user_id), service=deps.service, channel=channel)
    if isinstance(parsed, CreateCommand) and channel != reply.channel_id and result.lab is not None:
        result = replace(result, data={**result.data, "card_in": channel})
    cls = result.klass
    if result.kind == ReplyKind.CLASS and cls is not None and deps.class_board is not None \
            and (deps.service.is_admin(reply.user_id) or reply.user_id == cls.trainer):
        # The trainer's overview lives in their DM with labbot and stays up to date there.
        await deps.class_board.show(cls, user=reply.user_id, text=result.text)
        await reply.send(build_notice(_("{value}: the overview is in your DM with labbot and stays up to "
                                        "date.").format(value=result.text or f'Class `{cls.name}`')))
        return
    await reply.send(build_reply(result, now=deps.now()))



def _verb(text: str) -> str:
    """The command word, for metrics labels (only known verbs, so labels stay bounded)."""
    words = text.split()
    verb = words[0].lower() if words else "help"
    return verb if verb in _KNOWN_VERBS else "unknown"


_KNOWN_VERBS = {"create", "list", "ls", "status", "destroy", "delete", "extend", "health", "retry", "logs", "access",
                "check", "solve", "class", "pool", "picture", "capture", "help"}
