"""Answering the person who clicked or typed: through the response_url when Slack gave one, else
chat.postEphemeral in the channel, else (or when Slack refuses the ephemeral) a DM from the app.

After a modal closes there is no response_url, and the form may have come from a private channel or a DM
labbot is not in, where chat.postEphemeral answers ``channel_not_found``; the person's DM with the app always
exists, so the answer goes there instead of being lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks.kit import Message

log = logging.getLogger(__name__)

# chat.postEphemeral errors that mean "not in that conversation": the DM is the way to reach the person.
_EPHEMERAL_NOWHERE = {"channel_not_found", "not_in_channel", "is_archived", "user_not_in_channel",
                      "restricted_action", "no_permission"}


@dataclass
class UserReply:
    """Where answers to one request go."""

    user_id: str
    client: AsyncWebClient
    channel_id: str | None = None
    respond: AsyncRespond | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond | None) -> UserReply:
        """Read the user, channel and response_url of a command, action or view payload."""
        user = body.get("user_id") or (body.get("user") or {}).get("id") or ""
        channel = body.get("channel_id") or (body.get("channel") or {}).get("id")
        usable = respond if respond is not None and getattr(respond, "response_url", None) else None
        return cls(user_id=str(user), client=client, channel_id=channel, respond=usable)

    async def send(self, message: Message, *, replace_original: bool = False) -> None:
        """Show ``message`` to this user only."""
        if self.respond is not None:
            await self.respond(response_type="ephemeral", replace_original=replace_original, **message.as_kwargs())
        elif self.channel_id and not self.channel_id.startswith("D"):
            try:
                await self.client.chat_postEphemeral(channel=self.channel_id, user=self.user_id,
                                                     **message.as_kwargs())
            except SlackApiError as err:
                error = str(err.response.get("error", ""))
                if error not in _EPHEMERAL_NOWHERE:
                    raise
                log.info("cannot answer %s in %s (%s); answering by DM", self.user_id, self.channel_id, error)
                await self.dm(message)
        else:
            await self.dm(message)

    async def dm(self, message: Message) -> None:
        """Send ``message`` as a DM from the app (the user's Messages tab)."""
        await self.client.chat_postMessage(channel=self.user_id, **message.as_kwargs())

    async def delete_original(self) -> None:
        """Remove the ephemeral message the click came from (e.g. a confirmation), when there is one."""
        if self.respond is not None:
            await self.respond(delete_original=True)
