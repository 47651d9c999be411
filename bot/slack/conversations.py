"""Where a lab's card goes, decided before the lab exists, so every card lands where someone reads it.

A card goes to the conversation ``/lab create`` came from when labbot can post there (a channel it is in, a
public channel, thanks to ``chat:write.public``, or the person's DM with the app); otherwise to the labs
channel (``LABBOT_CHANNEL``). When neither can take it (a private channel or someone else's DM labbot is not
in, and no labs channel), the create is refused with what to do about it, instead of building a lab whose card,
failures and expiry warning nobody would ever see. Slack is asked with ``conversations.info``: a conversation
labbot is not in does not exist for it (``channel_not_found``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from services.errors import ConflictError
from services.i18n import _

log = logging.getLogger(__name__)

# Slack's answers meaning "labbot cannot post there" (as opposed to Slack being unreachable or slow).
NOT_POSTABLE = {"channel_not_found", "not_in_channel", "is_archived", "is_inactive"}


@dataclass(frozen=True)
class CardPlace:
    """The conversation a lab's card goes to, and whether that is where the person asked from."""

    channel: str
    elsewhere: bool  # the card goes somewhere else than where the person typed (tell them where)


async def can_post(client: AsyncWebClient, channel: str) -> bool:
    """Whether labbot can post in ``channel`` (a member, or a public channel; never archived).

    When Slack cannot be asked (network, an unexpected error), the answer is yes: a hiccup must not stop a
    create, and the outbox falls back to the labs channel or the owner's DM if the post is refused after all.
    """
    try:
        response = await client.conversations_info(channel=channel)
    except SlackApiError as err:
        error = str(err.response.get("error", ""))
        if error in NOT_POSTABLE:
            return False
        log.warning("could not check whether labbot can post in %s (%s); assuming it can", channel, error)
        return True
    except (aiohttp.ClientError, TimeoutError) as err:
        log.warning("could not check whether labbot can post in %s (%s); assuming it can", channel,
                    type(err).__name__)
        return True
    info = response.get("channel") or {}
    if info.get("is_archived"):
        return False
    return bool(info.get("is_im") or info.get("is_member") or not info.get("is_private"))


async def card_place(client: AsyncWebClient, *, origin: str | None, user_id: str,
                     labs_channel: str | None) -> CardPlace:
    """Where the card of a lab ``user_id`` creates from ``origin`` goes (see the module docstring).

    ``origin`` is None for the App Home: the labs channel, or else the person's DM with the app.
    """
    if origin is None:
        return CardPlace(labs_channel or user_id, elsewhere=True)
    if await can_post(client, origin):
        return CardPlace(origin, elsewhere=False)
    if labs_channel and labs_channel != origin:
        if await can_post(client, labs_channel):
            return CardPlace(labs_channel, elsewhere=True)
        log.error("labbot cannot post in LABBOT_CHANNEL %s: invite it there", labs_channel)
    raise ConflictError(
        _("labbot is not in this conversation, so nobody would see the lab's card, failures or expiry "
          "warning. Invite it here (`/invite @labbot`) or run `/lab create` in a channel labbot is in (or in "
          "your DM with labbot); nothing was created.")
    )
