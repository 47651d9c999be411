"""Hostile input to the command grammar (services.commands): whatever is typed, the answer is a typed command
whose every word is validated, or a CommandError with a short message; nothing else escapes.

The names the grammar lets through are the only user-typed values that go further (into the database, Slack
messages, platform resource names and, as lab names, into remote commands), so their alphabet is asserted here.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.capture.spec import CHOICES, MAX_BYTES, MAX_PACKETS, MAX_SECONDS, CaptureSpec
from services.commands import LAB_NAME, PROFILE_NAME, STEP_NAME, USAGE, Command, parse_command
from services.errors import CommandError

SHELL = ["$(reboot)", "`id`", ";rm -rf /", "&&", "|", "||", ">", "<", "*", "?", "~", "$HOME", "${IFS}", "\\",
         "'", '"', "\n", "\r", "\t", "\x00", "#", "!", "{a,b}", "-rf", "--", "--yes", "-o ProxyCommand=x"]
UNICODE = ["лаб", "実験", "\u202e", "\u200b", "\ufeff", "é", "🧪", "\u2014", "\u2013", "\u01c5", "\ufb01", "\uff21"]
VERBS = [*USAGE, "ls", "delete", "LIST", "Create", "/lab"]
SAFE = re.compile(r"^[a-z0-9_-]*$")

word = st.one_of(
    st.sampled_from(SHELL + UNICODE + VERBS),
    st.text(min_size=1, max_size=40),
    st.from_regex(LAB_NAME, fullmatch=True),
    st.sampled_from(["--ttl", "--profile", "--all", "--yes", "--ttl=2h", "--profile=sandbox", "2h", "90m", "1d",
                     "iscsi", "all", "--seconds", "--packets=5", "--exercise-io", "--seconds=121", "0", "-1", "٣"]),
    st.builds(lambda a, b: a + b, st.sampled_from(["demo", "lab-1", "x"]), st.sampled_from(SHELL + UNICODE)),
)
command_line = st.one_of(
    st.text(max_size=300),
    st.lists(word, max_size=8).map(" ".join),
    st.tuples(st.sampled_from(VERBS), st.lists(word, max_size=6)).map(lambda t: " ".join([t[0], *t[1]])),
    st.tuples(st.sampled_from(VERBS), st.lists(word, max_size=4)).map(
        lambda t: " ".join([t[0], *("'" + w.replace("'", "") + "'" for w in t[1])])),
)


def check_parsed(command: Command) -> None:
    for field in dataclasses.fields(command):
        value = getattr(command, field.name)
        if value is None or isinstance(value, bool | timedelta):
            continue
        if isinstance(value, CaptureSpec):  # every capture limit within the hard bounds, whatever was typed
            assert value.flows in CHOICES and isinstance(value.exercise_io, bool), value
            assert 1 <= value.seconds <= MAX_SECONDS and 1 <= value.packets <= MAX_PACKETS, value
            assert value.max_bytes <= MAX_BYTES, value
            continue
        assert isinstance(value, str) and SAFE.match(value), (field.name, value)
        pattern = {"name": LAB_NAME, "profile": PROFILE_NAME, "step": STEP_NAME}.get(field.name)
        if pattern is not None:
            assert pattern.match(value), (field.name, value)
        elif field.name == "topic":
            assert value in USAGE
        else:
            raise AssertionError(f"unexpected free-text field {field.name}={value!r}")
    for name in ("ttl", "duration"):
        value = getattr(command, name, None)
        if value is not None:
            assert timedelta(0) < value <= timedelta(days=366), value


@settings(max_examples=800, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_line)
@example("create demo --ttl 2h")
@example("create 'demo; reboot' --ttl 2h")
@example("destroy $(reboot)")
@example("logs demo 'iscsi_target; id'")
@example("create demo --profile '../../etc/passwd'")
@example("extend demo 99999999999999999999d")
@example("create " + "a" * 999)
@example("x" * 1001)
@example("create \"unterminated")
def test_every_line_parses_to_safe_values_or_a_short_error(text: str) -> None:
    try:
        command = parse_command(text)
    except CommandError as err:
        message = err.user_message
        assert message and len(message) < 1500, len(message)
        assert "Traceback" not in message
        # Echoed input is clipped, so a huge or hostile line cannot fill a Slack reply.
        assert len(err.message) < 200 + len(text[:60]), err.message
        return
    check_parsed(command)


@settings(max_examples=300, deadline=None, database=None)
@given(st.from_regex(LAB_NAME, fullmatch=True), st.sampled_from(["status", "destroy", "health", "retry", "access"]))
def test_valid_names_round_trip(name: str, verb: str) -> None:
    command = parse_command(f"{verb} {name}")
    assert getattr(command, "name") == name
