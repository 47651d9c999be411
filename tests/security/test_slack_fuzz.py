"""Hostile requests at every Slack entry point, through real signed HTTP into the real app.

Slash commands, block actions, view submissions, events and options (which labbot does not serve) get
malformed JSON, wrong types, huge fields, unicode and shell metacharacters in every user-supplied field. Each
request must get a clear answer or a 4xx: never a 5xx, never a traceback (in the response or in anything sent to
Slack), never an unexpected error in labbot's logs, and nothing changed in the database. The sender is Mallory,
who owns nothing; the labs she aims at are Alice's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.blocks.ids import CreateField, LabAction, ViewId
from services.commands import CreateCommand, parse_command
from services.errors import CommandError
from tests.security.slackbox import SlackBox, slack_box
from tests.security.test_grammar_fuzz import SHELL, UNICODE
from tests.slack import payloads

MALLORY = "U_MALLORY"
FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))

hostile_text = st.one_of(
    st.sampled_from(SHELL + UNICODE),
    st.text(max_size=60),
    st.builds(lambda a, b: a + b, st.sampled_from(["demo", "broken", "lab-x"]), st.sampled_from(SHELL + UNICODE)),
    st.integers(1, 200).map(lambda n: "A" * (n * 500)),  # up to 100 kB
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
any_value = st.one_of(hostile_text, json_value, json_value.map(json.dumps))
lab_ref = st.fixed_dictionaries({"lab_id": st.one_of(st.integers(-2**63, 2**63), hostile_text),
                                 "name": st.one_of(st.sampled_from(["demo", "broken"]), hostile_text)})


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackBox]:
    with slack_box(Path(tmp_path_factory.mktemp("fuzz")) / "labbot.db") as b:
        yield b


def check(box: SlackBox, send: Any, *, may_change: bool = False) -> None:
    """Send, wait for the work it started, then check the answer, what reached Slack, the logs and the DB."""
    before = box.snapshot()
    seen = len(box.h.fake.raw)
    errors = len(box.errors.records)
    response = send()
    box.settle()
    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text and 'File "' not in response.text
    for _, _, body in box.h.fake.raw[seen:]:
        text = body.decode("utf-8", "replace")
        assert "Traceback" not in text and 'File "' not in text and "Exception" not in text, text[:300]
    new_errors = box.errors.records[errors:]
    assert not new_errors, [r.getMessage() for r in new_errors]
    if not may_change:
        assert box.snapshot() == before


def form(payload: Any) -> str:
    return "payload=" + quote(payload if isinstance(payload, str) else json.dumps(payload))


@FUZZ
@given(text=hostile_text, channel=st.one_of(st.just("C_LABS"), hostile_text), trigger=hostile_text,
       extra=st.dictionaries(st.sampled_from(["user_id", "channel_id", "team_id", "command", "trigger_id"]),
                             hostile_text, max_size=2))
def test_slash_commands(box: SlackBox, text: str, channel: str, trigger: str, extra: dict[str, str]) -> None:
    try:
        creates = isinstance(parse_command(text), CreateCommand)
    except CommandError:
        creates = False
    fields = {"command": "/lab", "text": text, "user_id": MALLORY, "user_name": "mallory", "channel_id": channel,
              "team_id": "T111", "api_app_id": "A111", "trigger_id": trigger,
              "response_url": box.h.fake.hook_url("fuzz"), **extra}
    check(box, lambda: box.post(urlencode(fields), payloads.FORM), may_change=creates)


@FUZZ
@given(action_id=st.one_of(st.sampled_from(list(LabAction)), hostile_text),
       value=st.one_of(lab_ref.map(json.dumps), any_value),
       shape=st.sampled_from(["button", "select", "no-value", "wrong-types", "no-container"]))
def test_block_actions(box: SlackBox, action_id: str, value: Any, shape: str) -> None:
    action: dict[str, Any] = {"action_id": action_id, "block_id": "lab_actions", "type": "button", "value": value,
                              "action_ts": "1700000000.1"}
    if shape == "select":
        action.update(type="static_select", selected_option={"value": value, "text": {"type": "plain_text",
                                                                                      "text": "x"}})
    elif shape == "no-value":
        action.pop("value")
    payload: dict[str, Any] = {
        "type": "block_actions", "user": {"id": MALLORY, "name": "mallory", "team_id": "T111"},
        "api_app_id": "A111", "team": {"id": "T111"}, "trigger_id": "1.2.fuzz", "actions": [action],
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C_LABS"},
        "channel": {"id": "C_LABS"}, "message": {"ts": "1700000000.000100", "text": "card"},
        "response_url": box.h.fake.hook_url("fuzz"),
    }
    if shape == "wrong-types":
        payload.update(user=value, channel=value, container=value, message=value)
    elif shape == "no-container":
        for key in ("container", "channel", "message", "response_url"):
            payload.pop(key)
    check(box, lambda: box.post(form(payload), payloads.FORM))


@FUZZ
@given(name=hostile_text, profile=any_value, ttl=any_value, metadata=any_value,
       shape=st.sampled_from(["fields", "wrong-types", "no-state", "unknown-callback"]))
def test_view_submissions(box: SlackBox, name: str, profile: Any, ttl: Any, metadata: Any, shape: str) -> None:
    values: Any = {
        CreateField.NAME: {CreateField.NAME: {"type": "plain_text_input", "value": name}},
        CreateField.PROFILE: {CreateField.PROFILE: {"type": "static_select", "selected_option": {"value": profile}}},
        CreateField.TTL: {CreateField.TTL: {"type": "static_select", "selected_option": {"value": ttl}}},
    }
    if shape == "wrong-types":
        values = {CreateField.NAME: name, CreateField.TTL: [ttl], CreateField.PROFILE: profile}
    view: dict[str, Any] = {"id": "V1", "type": "modal", "callback_id": ViewId.CREATE_LAB, "state": {"values": values},
                            "private_metadata": metadata if isinstance(metadata, str) else json.dumps(metadata)}
    if shape == "no-state":
        view.pop("state")
    if shape == "unknown-callback":
        view["callback_id"] = name
    payload = {"type": "view_submission", "user": {"id": MALLORY, "team_id": "T111"}, "team": {"id": "T111"},
               "api_app_id": "A111", "view": view, "trigger_id": "1.2.view"}
    # A well-formed form with a valid name may create Mallory's lab: that is the feature, not a change to refuse.
    check(box, lambda: box.post(form(payload), payloads.FORM), may_change=True)
    assert box.lab_names() <= {"demo", "broken"} | {name}


@FUZZ
@example(event=None, envelope_type="event_callback", event_id="E1")  # crashed Bolt's middleware: a 500
@example(event="x", envelope_type="url_verification", event_id="E2")  # likewise, in the self-events filter
@example(event=[1], envelope_type="event_callback", event_id="E3")
# A number as the user crashed Bolt's context building (`"id" in user`): found by this test, now refused first.
@example(event={"type": "app_home_opened", "user": -2.2e-311, "tab": "home", "channel": "\n"},
         envelope_type="url_verification", event_id="E4")
@given(event=st.one_of(
    st.fixed_dictionaries({"type": st.just("app_home_opened"), "user": any_value, "tab": any_value,
                           "channel": any_value}),
    st.dictionaries(st.text(max_size=10), json_value, max_size=4),
    json_value),
    envelope_type=st.sampled_from(["event_callback", "url_verification", "app_rate_limited", "nonsense"]),
    event_id=any_value)
def test_events(box: SlackBox, event: Any, envelope_type: str, event_id: Any) -> None:
    body = json.dumps({"token": "x", "team_id": "T111", "api_app_id": "A111", "type": envelope_type,
                       "event": event, "event_id": event_id, "event_time": 1700000000, "challenge": "c"})
    check(box, lambda: box.post(body, payloads.JSON))


@FUZZ
@given(action_id=hostile_text, value=any_value)
def test_options_requests_labbot_does_not_serve(box: SlackBox, action_id: str, value: Any) -> None:
    payload = {"type": "block_suggestion", "user": {"id": MALLORY}, "team": {"id": "T111"}, "action_id": action_id,
               "block_id": "b", "value": value, "api_app_id": "A111"}
    check(box, lambda: box.post(form(payload), payloads.FORM))


@FUZZ
@given(body=st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=500),
    hostile_text.map(lambda t: "payload=" + quote(t)),
    st.just("payload="), st.just("payload=%7B"), st.just("payload=null"), st.just("payload=[1,2]"),
    st.just("payload=" + quote(json.dumps({"type": ["block_actions"]}))),
    st.just("{"), st.just("[]"), st.just("null"), st.just('{"type": 5}'),
), content_type=st.sampled_from([payloads.FORM, payloads.JSON, "text/plain", "multipart/form-data"]))
@example(body=b"\x80", content_type=payloads.FORM)  # not UTF-8: the signature check itself raised
@example(body="{", content_type=payloads.FORM)  # Bolt reads anything starting with { as JSON
@example(body="payload=null", content_type=payloads.FORM)
def test_malformed_bodies(box: SlackBox, body: str | bytes, content_type: str) -> None:
    check(box, lambda: box.post(body, content_type))


def test_the_fuzzed_labs_are_intact(box: SlackBox) -> None:
    """After all of it (module order), Alice's labs are as she left them."""
    assert {"demo", "broken"} <= box.lab_names()
    status = box.run(box.h.world.service.status("demo"))
    assert status.state == "ready" and status.owner == "U_ALICE"
