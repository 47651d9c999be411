"""The command grammar: typed commands for good input, a CommandError with usage for bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.commands import (
    AccessCommand,
    CheckCommand,
    ClassClaimCommand,
    ClassCreateCommand,
    ClassDestroyCommand,
    ClassExtendCommand,
    ClassStatusCommand,
    CreateCommand,
    DestroyCommand,
    ExtendCommand,
    HelpCommand,
    ListCommand,
    LogsCommand,
    RetryCommand,
    SolveCommand,
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("create ex1 --exercise", CreateCommand("ex1", exercise=True)),
        ("create ex1 --exercise --from nested_compute", CreateCommand("ex1", exercise=True, start="nested_compute")),
        ("check ex1", CheckCommand("ex1")),
        ("solve ex1 iscsi_target", SolveCommand("ex1", "iscsi_target")),
        ("class create c1 --count 3", ClassCreateCommand("c1", 3)),
        ("class create c1 --for <@U123|ann> <@U456> --exercise --ttl 2h",
         ClassCreateCommand("c1", 2, ("U123", "U456"), exercise=True, ttl=timedelta(hours=2))),
        ("class create c1 --count 5 --for @U123 --profile sandbox",
         ClassCreateCommand("c1", 5, ("U123",), profile="sandbox")),
        ("class status c1", ClassStatusCommand("c1")),
        ("class claim c1", ClassClaimCommand("c1")),
        ("class extend c1 90m", ClassExtendCommand("c1", timedelta(minutes=90))),
        ("class destroy c1 --yes", ClassDestroyCommand("c1", yes=True)),
    ],
)
def test_trainer_commands(text: str, expected: object) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("create ex1 --from iscsi_target", "`--from` goes with `--exercise`"),
        ("create ex1 --exercise --from 'x;y'", "not a step name"),
        ("check", "needs the lab's name"),
        ("solve ex1", "takes a lab name and a step"),
        ("solve ex1 'a b'", "not a step name"),
        ("class", "needs a subcommand"),
        ("class teach c1", "unknown class command `teach`"),
        ("class create c1", "needs `--count N`"),
        ("class create c1 --count 0", "from 1 to 99"),
        ("class create c1 --count 100", "from 1 to 99"),
        ("class create c1 --count 1 --for @U11 @U22", "2 students named for 1 labs"),
        ("class create c1 --for @U11 @U11", "named twice"),
        ("class create c1 --for bob", "`bob` is not a Slack user"),
        ("class create c1 --for", "needs at least one @student"),
        ("class create C1 --count 2", "not a valid class name"),
        ("class create a" + "b" * 28 + " --count 2", "not a valid class name"),
        ("class status", "needs the class's name"),
        ("class extend c1", "a duration"),
        ("class extend c1 forever", "not a duration"),
        ("class destroy c1 --force", "not an option of `class destroy`"),
    ],
)
def test_bad_trainer_commands_say_what_and_how(text: str, fragment: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(text)
    assert fragment in info.value.message
    assert "/lab " in info.value.user_message
