"""The one place errors become what a Slack user sees.

A ``LabbotError`` becomes its ``user_message``. Anything else gets a short error id that is logged with the
traceback and shown to the user, so they can quote it and nobody sees internals (or secrets) in Slack. Used by
Bolt's global ``@app.error`` and by the background tasks handlers start after ``ack()``.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.kit import Message
from bot.blocks.replies import build_error
from bot.slack.reply import UserReply
from services.errors import LabbotError

log = logging.getLogger(__name__)


def new_error_id() -> str:
    """A short id to quote to an admin (``E-3f9a1c``)."""
    return "E-" + secrets.token_hex(3)


def describe(error: BaseException, *, what: str) -> Message:
    """The message for ``error``; unknown errors are logged here, once, with their id and traceback."""
    if isinstance(error, LabbotError):
        log.info("%s refused: %s", what, error.user_message)
        return build_error(error.user_message)
    error_id = new_error_id()
    log.error("error %s in %s", error_id, what, exc_info=error)
    return build_error("", error_id=error_id)


async def report(error: BaseException, *, reply: UserReply | None, what: str) -> None:
    """Tell the user what went wrong (privately); never raises."""
    message = describe(error, what=what)
    if reply is None or not reply.user_id:
        return
    try:
        await reply.send(message)
    except (SlackApiError, OSError, TimeoutError):
        log.warning("could not tell %s about a failed %s", reply.user_id, what, exc_info=True)


async def handle_app_error(
    error: Exception,
    body: dict[str, Any],
    client: AsyncWebClient,
    respond: AsyncRespond | None,
    response: BoltResponse | None = None,
) -> BoltResponse | None:
    """Bolt's global error handler (``app.error``).

    A listener that fails after its ``ack()`` has no HTTP response left to shape: Bolt calls this with
    ``response=None`` and refuses a returned one (an AssertionError in its task), so nothing is returned then.
    """
    kind = body.get("type") or ("slash_command" if "command" in body else "request")
    reply = UserReply.from_body(body, client, respond) if body else None
    await report(error, reply=reply, what=str(kind))
    # The user has their answer (the error, or its id, privately) and the traceback is in the log under that id;
    # a 5xx would only add Slack's own failure notice. Events are not redelivered: a retry would fail the same way.
    if response is None:
        return None
    return BoltResponse(status=200, body="", headers={"X-Slack-No-Retry": "1"})
