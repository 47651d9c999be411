"""``labbot doctor [--profile NAME]``: check the configured platform, profile, database and Slack before any lab.

One line per check, ok or a problem with what to do (``services.doctor``), plus the Slack check, which only the
front end may make: the bot token is valid (``auth.test``) and the labs channel is reachable
(``conversations.info``). Exit status 1 when anything is a problem.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import typer

from config.profiles import load_profiles
from config.settings import Settings, load_settings
from services import db
from services.doctor import render, run_doctor
from services.errors import LabbotError
from services.i18n import _, ngettext
from services.labs.preflight import Check
from services.zstack.client import ZStackClient

log = logging.getLogger(__name__)


async def slack_check(settings: Settings) -> Check | None:
    """The bot token works and the labs channel is reachable; None when Slack is not configured."""
    if settings.slack_bot_token is None:
        return None
    from slack_sdk.errors import SlackApiError, SlackClientError
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url,
                            timeout=15)
    try:
        identity = await client.auth_test()
        if settings.channel:
            info = await client.conversations_info(channel=settings.channel)
            # A public channel takes posts uninvited (chat:write.public); a private one the bot is not in is
            # channel_not_found. An archived one takes nothing.
            if (info.get("channel") or {}).get("is_archived"):
                return Check("slack", False, _("LABBOT_CHANNEL {channel} is archived: unarchive it or pick "
                                               "another channel").format(channel=settings.channel))
    except SlackApiError as err:
        reason = str(err.response.get("error") or "error")
        todo = (
            _("check LABBOT_CHANNEL and invite the bot there")
            if reason in ("channel_not_found", "not_in_channel")
            else _("check SLACK_BOT_TOKEN (a bot token, xoxb-, of the installed app)")
        )
        return Check("slack", False, _("Slack answered `{reason}`: {todo}").format(reason=reason, todo=todo))
    except (SlackClientError, OSError, TimeoutError) as err:
        return Check(
            "slack",
            False,
            _("cannot reach Slack at {slack_api_url}: {name}; check SLACK_API_URL and the network").format(
                slack_api_url=settings.slack_api_url, name=type(err).__name__
            ),
        )
    where = (
        _(", channel {channel} reachable").format(channel=settings.channel)
        if settings.channel
        else _(" (no LABBOT_CHANNEL set)")
    )
    return Check(
        "slack",
        True,
        _("token valid for {value} in {value2}{where}").format(
            value=identity.get("user") or "the bot", value2=identity.get("team") or "the workspace", where=where
        ),
    )


async def doctor(settings: Settings, profile: str | None, echo: Callable[[str], None]) -> bool:
    """Run every check, print one line each, and say whether all passed."""
    profiles = load_profiles(settings.profiles_dir)
    engine = db.make_engine(settings.database_url)
    outer = ZStackClient(
        settings.platform_url,
        settings.platform_account,
        settings.platform_password,
        timeout=min(settings.platform_timeout_seconds, 15),
    )
    try:
        checks = await run_doctor(
            settings, profiles, profile, outer=outer, engine=engine, sessions=db.make_sessionmaker(engine)
        )
        found = await slack_check(settings)
        if found is not None:
            checks.append(found)
    finally:
        await outer.aclose()
        await engine.dispose()
    for line in render(checks):
        echo(line)
    problems = sum(not c.ok for c in checks)
    echo(
        ngettext("{checks} checks, {n} problem", "{checks} checks, {n} problems", problems).format(
            checks=len(checks), n=problems
        )
    )
    return problems == 0


def doctor_command(
    profile: str | None = typer.Option(None, "--profile", help="The profile to check (default: the default one)."),
) -> None:
    """Check the lab platform, a profile, the database and Slack before building labs (exit 1 on a problem)."""
    settings = load_settings()
    logging.basicConfig(level=logging.WARNING)
    try:
        ok = asyncio.run(doctor(settings, profile, typer.echo))
    except LabbotError as err:
        typer.echo(_("PROBLEM doctor: {user_message}").format(user_message=err.user_message))
        raise typer.Exit(1) from None
    raise typer.Exit(0 if ok else 1)
