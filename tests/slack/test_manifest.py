"""The Slack app manifest admins paste into api.slack.com agrees with what the app registers and calls.

A missing scope or event subscription shows up in production as a handler that never fires or a
``missing_scope`` error; these checks catch it when the code changes instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from handlers.slack.commands import COMMAND
from services.commands import USAGE

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = yaml.safe_load((ROOT / "bot" / "slack" / "manifest.yaml").read_text())
SOURCES = [*ROOT.joinpath("bot").rglob("*.py"), *ROOT.joinpath("handlers").rglob("*.py")]
# The bot scopes each Web API method labbot calls needs (docs.slack.dev/reference/methods/<method>, "Scopes"):
# the conversation methods need one per kind of conversation a card can live in (public or private channel,
# group DM, the owner's DM with the app).
_CHAT = {"chat:write"}
_INFO = {"channels:read", "groups:read", "im:read", "mpim:read"}
_HISTORY = {"channels:history", "groups:history", "im:history", "mpim:history"}
SCOPE_OF_METHOD: dict[str, set[str]] = {
    "chat_postMessage": _CHAT, "chat.postMessage": _CHAT,
    "chat_update": _CHAT, "chat.update": _CHAT,
    "chat_postEphemeral": _CHAT, "chat.postEphemeral": _CHAT,
    "conversations_info": _INFO, "conversations_history": _HISTORY,
    "files_upload_v2": {"files:write"},  # files.getUploadURLExternal + files.completeUploadExternal
    "views_open": set(), "views_publish": set(), "views_update": set(),  # need no scope beyond the app's
    "usergroups_users_list": {"usergroups:read"}, "usergroups.users.list": {"usergroups:read"},
    "users_info": {"users:read"}, "users.info": {"users:read"},
}
# Scopes no method call shows: the slash command, and posting in public channels labbot was not invited to
# (bot.slack.conversations treats a public channel as a place a card can go).
CAPABILITY_SCOPES = {"commands", "chat:write.public"}


def _source() -> str:
    return "\n".join(path.read_text() for path in SOURCES)


def test_the_slash_command_is_the_one_the_app_listens_to() -> None:
    commands = [c["command"] for c in MANIFEST["features"]["slash_commands"]]
    assert commands == [COMMAND]
    assert "commands" in MANIFEST["oauth_config"]["scopes"]["bot"]


def test_every_event_the_app_listens_to_is_subscribed() -> None:
    registered = set(re.findall(r"app\.event\(\"([a-z_.]+)\"\)", _source()))
    assert registered, "no app.event registration found: the pattern no longer matches the handlers"
    assert registered == set(MANIFEST["settings"]["event_subscriptions"]["bot_events"])
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is ("app_home_opened" in registered)


def test_every_web_api_method_the_app_calls_has_its_scope() -> None:
    source = _source()
    called = set(re.findall(r"client\.(chat_\w+|views_\w+|conversations_\w+|users_\w+|usergroups_\w+|files_\w+)\(",
                            source))
    called |= set(re.findall(r"\"((?:chat|views|conversations|users|usergroups)\.[A-Za-z]+)\"", source))
    assert called, "no Web API call found: the pattern no longer matches the code"
    unknown = called - SCOPE_OF_METHOD.keys()
    assert not unknown, f"add the scope these methods need to SCOPE_OF_METHOD and the manifest: {unknown}"
    needed = set().union(*(SCOPE_OF_METHOD[method] for method in called)) | CAPABILITY_SCOPES
    granted = MANIFEST["oauth_config"]["scopes"]["bot"]
    assert len(granted) == len(set(granted))
    # Exactly what the code uses: a missing scope fails in production, an unused one asks admins for too much.
    assert set(granted) == needed, (set(granted) - needed, needed - set(granted))


def test_the_usage_hint_lists_every_command() -> None:
    hint = MANIFEST["features"]["slash_commands"][0]["usage_hint"]
    listed = {part.split()[0] for part in hint.split("|")}
    assert listed == set(USAGE), (set(USAGE) - listed, listed - set(USAGE))


def test_request_urls_point_at_the_route_labbot_serves() -> None:
    http_source = (ROOT / "bot" / "http.py").read_text()
    assert 'Route("/slack/events"' in http_source
    settings = MANIFEST["settings"]
    urls = [settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"],
            *(c["url"] for c in MANIFEST["features"]["slash_commands"])]
    assert all(url.endswith("/slack/events") for url in urls)
    assert settings["interactivity"]["is_enabled"] is True
