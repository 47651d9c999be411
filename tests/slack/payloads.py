"""Signed Slack requests shaped like shared/reference/slack.md: slash commands, block actions, view
submissions and Events API callbacks."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any
from urllib.parse import quote, urlencode

from slack_sdk.signature import SignatureVerifier

from tests.slack.world import SIGNING_SECRET

_ids = itertools.count(1)


def sign(body: str, *, content_type: str, secret: str = SIGNING_SECRET, timestamp: int | None = None,
         retry: int | None = None) -> dict[str, str]:
    """Headers Slack sends with ``body``: content type, timestamp, v0 signature (and the retry number)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "content-type": content_type,
        "x-slack-request-timestamp": ts,
        "x-slack-signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body),
    }
    if retry is not None:
        headers.update({"x-slack-retry-num": str(retry), "x-slack-retry-reason": "http_timeout"})
    return headers


def slash_command(text: str, *, response_url: str, user: str = "U_ALICE", channel: str = "C_LABS",
                  trigger_id: str | None = None) -> str:
    """The form body of ``/lab <text>``."""
    return urlencode({
        "token": "verification_token", "team_id": "T111", "team_domain": "test-domain", "channel_id": channel,
        "channel_name": "labs", "user_id": user, "user_name": user.lower(), "command": "/lab", "text": text,
        "api_app_id": "A111", "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": trigger_id or f"{next(_ids)}.111.xxx",
    })


def block_action(action_id: str, *, value: str | None = None, selected: str | None = None, user: str = "U_ALICE",
                 channel: str = "C_LABS", message_ts: str = "1700000000.000100", response_url: str | None = None,
                 container: dict[str, Any] | None = None, trigger_id: str | None = None) -> str:
    """The form body of a click on a button (``value``) or a select option (``selected``)."""
    action: dict[str, Any] = {"action_id": action_id, "block_id": "lab_actions", "action_ts": f"{time.time():.6f}"}
    if selected is not None:
        action.update(type="static_select", selected_option={"text": {"type": "plain_text", "text": "x"},
                                                             "value": selected})
    else:
        action.update(type="button", value=value, text={"type": "plain_text", "text": "Button"})
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T111"},
        "api_app_id": "A111", "token": "verification_token",
        "container": container or {"type": "message", "message_ts": message_ts, "channel_id": channel,
                                    "is_ephemeral": False},
        "trigger_id": trigger_id or f"{next(_ids)}.222.valid",
        "team": {"id": "T111", "domain": "workspace-domain"},
        "actions": [action], "state": {"values": {}},
    }
    if container is None or container.get("type") == "message":
        payload["channel"] = {"id": channel, "name": "labs"}
        payload["message"] = {"type": "message", "ts": message_ts, "text": "card"}
    if response_url:
        payload["response_url"] = response_url
    return f"payload={quote(json.dumps(payload))}"


def view_submission(values: dict[str, Any], *, private_metadata: str, user: str = "U_ALICE",
                    callback_id: str = "lab_create") -> str:
    """The form body of a modal submission."""
    view_id = f"V{next(_ids):06d}"
    payload = {
        "type": "view_submission", "team": {"id": "T111", "domain": "workspace-domain"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T111"},
        "api_app_id": "A111", "token": "verification_token", "trigger_id": f"{next(_ids)}.333.valid",
        "view": {"id": view_id, "team_id": "T111", "type": "modal", "blocks": [], "private_metadata": private_metadata,
                 "callback_id": callback_id, "state": {"values": values}, "hash": f"{time.time():.0f}.abc",
                 "title": {"type": "plain_text", "text": "New lab"}, "root_view_id": view_id, "app_id": "A111",
                 "bot_id": "B0BOT"},
        "response_urls": [],
    }
    return f"payload={quote(json.dumps(payload))}"


def app_home_opened(user: str = "U_ALICE", *, event_id: str | None = None) -> str:
    """The JSON body of an app_home_opened event."""
    return json.dumps({
        "token": "verification-token", "team_id": "T111", "api_app_id": "A111",
        "event": {"type": "app_home_opened", "user": user, "channel": "D111", "tab": "home",
                  "event_ts": f"{time.time():.6f}"},
        "type": "event_callback", "event_id": event_id or f"Ev{next(_ids):08d}", "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": "T111", "user_id": "U0BOT", "is_bot": True,
                            "is_enterprise_install": False}],
    })


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
