"""The command grammar: typed commands for good input, a CommandError with usage for bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.commands import (
    AccessCommand,
    CreateCommand,
    DestroyCommand,
    ExtendCommand,
    HelpCommand,
    ListCommand,
    LogsCommand,
    RetryCommand,
    StatusCommand,
    parse_command,
)
from services.errors import CommandError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("create", CreateCommand()),
        ("/lab create demo-1 --ttl 90m --profile sandbox", CreateCommand("demo-1", timedelta(minutes=90), "sandbox")),
        ("create --ttl=2d demo", CreateCommand("demo", timedelta(days=2))),
        ("list", ListCommand()),
        ("list --all", ListCommand(all=True)),
        ("status demo", StatusCommand("demo")),
        ("destroy demo --yes", DestroyCommand("demo", yes=True)),
        ("extend demo", ExtendCommand("demo")),
        ("extend demo 4h", ExtendCommand("demo", timedelta(hours=4))),
        ("retry demo", RetryCommand("demo")),
        ("logs demo install_zstack", LogsCommand("demo", "install_zstack")),
        ("access demo", AccessCommand("demo")),
        ("", HelpCommand()),
        ("help extend", HelpCommand("extend")),
        ("  STATUS   demo ", StatusCommand("demo")),
    ],
)
def test_good_commands(text: str, expected: object) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("create Demo", "not a valid lab name"),
        ("create d", "not a valid lab name"),
        ("create demo-", "not a valid lab name"),
        ("create a" + "b" * 31, "not a valid lab name"),
        ("create 'demo;rm -rf /'", "not a valid lab name"),
        ("create demo;rm -rf /", "at most one lab name"),
        ("create demo --ttl 4y", "not a duration"),
        ("create demo --ttl", "needs a value"),
        ("create demo --ttl 1h --ttl 2h", "given twice"),
        ("create demo --force", "not an option of `create`"),
        ("status", "needs the lab's name"),
        ("status a b", "takes one lab name"),
        ("extend demo forever", "not a duration"),
        ("launch demo", "unknown command `launch`"),
        ('status "demo', "could not read the command"),
        ("help nothing", "there is no command `nothing`"),
    ],
)
def test_bad_commands_say_what_and_how(text: str, fragment: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    assert fragment in info.value.message
    assert "/lab " in info.value.user_message  # the usage is always shown


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200) | st.lists(st.sampled_from(
    ["create", "list", "status", "destroy", "extend", "logs", "help", "demo", "--ttl", "--all", "--yes",
     "4h", "0m", "--profile", "'", '"', ";", "$(id)", "\x00", "ÿ", "--ttl=", "a-b"]), max_size=8).map(" ".join))
def test_any_text_gives_a_command_or_a_command_error(text: str) -> None:
    try:
        command = parse_command(text)
    except CommandError as err:
        assert err.user_message
    else:
        name = getattr(command, "name", None)
        assert name is None or (name.isascii() and name.replace("-", "").isalnum())
