"""No user-supplied value reaches a shell unquoted.

The user types lab names (and steps, profiles, durations: none of which reach a shell); the lab platform
returns addresses. Every remote command labbot builds (services.ssh.detached, services.iscsi, the pipeline
steps through them) takes those values through a validator in ``services.shell`` and then ``quote``. The
properties checked here, with hypothesis and a recording runner at the seam where commands leave labbot:

* a value a validator accepts needs no quoting at all (``shlex.quote(v) == v``): nothing it contains is special
  to a shell, so even a forgotten quote could not be exploited;
* a name the command grammar accepts is a valid lab name for the shell layer (one definition, two places);
* the command builders either refuse a hostile value or produce a line whose ``shlex.split`` gives back every
  argument exactly (the ``sh -c script labbot args…`` round trip);
* the iSCSI backends given a hostile target spec refuse it before running a single command.
"""

from __future__ import annotations

import asyncio
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services import shell
from services.commands import LAB_NAME, StatusCommand, parse_command
from services.errors import CommandError
from services.iscsi import firewall
from services.iscsi.base import TargetSpec
from services.iscsi.naming import object_name, target_iqn
from services.iscsi.targetcli import TargetcliBackend
from services.iscsi.tgt import TgtBackend, conf_file
from services.ssh import detached
from services.ssh.access import access_commands
from services.ssh.result import CommandResult
from tests.security.test_grammar_fuzz import SHELL, UNICODE

FAST = settings(max_examples=150, deadline=None, database=None)
hostile = st.one_of(
    st.text(min_size=1, max_size=80),
    st.sampled_from(SHELL + UNICODE),
    st.builds(lambda a, b, c: a + b + c, st.sampled_from(["lab", "iqn.2026-11.io.labbot:lab", "/dev/sdb", "10.0.0.1"]),
              st.sampled_from(SHELL + UNICODE), st.text(max_size=10)),
)
VALIDATORS = {
    "lab_name": shell.lab_name, "identifier": shell.identifier, "job_name": shell.job_name, "iqn": shell.iqn,
    "ipv4": shell.ipv4, "device_path": shell.device_path, "safe_path": shell.safe_path,
    "username": shell.username, "hex_string": shell.hex_string,
}


@FAST
@given(value=hostile, validator=st.sampled_from(sorted(VALIDATORS)))
def test_what_a_validator_accepts_needs_no_quoting(value: str, validator: str) -> None:
    try:
        accepted = VALIDATORS[validator](value)
    except shell.UnsafeValueError as err:
        assert isinstance(err, CommandError) and len(err.user_message) < 400
        return
    assert accepted == value and shlex.quote(value) == value, (validator, value)
    assert not value.startswith("-") or validator in {"job_name"}, value  # never mistaken for an option


@FAST
@given(st.one_of(hostile, st.from_regex(LAB_NAME, fullmatch=True)))
def test_the_grammar_and_the_shell_layer_agree_on_lab_names(name: str) -> None:
    try:
        command = parse_command(f"status {shlex.quote(name)}")
    except CommandError:
        with pytest.raises(shell.UnsafeValueError):
            shell.lab_name(name)
        return
    assert isinstance(command, StatusCommand)
    assert shell.lab_name(command.name) == command.name == name


@FAST
@given(name=st.one_of(hostile, st.from_regex(LAB_NAME, fullmatch=True)), job=st.one_of(hostile, st.just("install")))
def test_lab_derived_names_in_remote_paths(name: str, job: str) -> None:
    """Lab names become job directories, IQNs and tgt/LIO object and file names on the VMs."""
    try:
        directory = detached.job_dir(name, job)
    except shell.UnsafeValueError:
        directory = None
    if directory is not None:
        assert shlex.quote(directory) == directory
    try:
        iqn = target_iqn("iqn.2026-11.io.labbot", name)
    except shell.UnsafeValueError:
        assert not LAB_NAME.fullmatch(name)  # match() would take "a0\n" for a name ($ matches before a newline)
        return
    assert shlex.quote(iqn) == iqn and iqn.endswith(":" + name)
    assert shlex.quote(object_name(iqn)) == object_name(iqn)
    assert shlex.quote(conf_file(iqn)) == conf_file(iqn)


@FAST
@given(args=st.lists(st.one_of(hostile, st.integers(0, 2**31)), min_size=1, max_size=5))
def test_sh_c_scripts_round_trip_every_argument(args: list[str | int]) -> None:
    """Every ``sh -c`` script labbot runs (detached jobs, the firewall, the initiator, the installer search …) is
    built by ``shell.sh_c``, which passes values as ``$1 $2 …``, never inside the script text."""
    argv = shlex.split(shell.sh_c("echo \"$@\"", *args))
    assert argv[:4] == ["sh", "-c", "echo \"$@\"", "labbot"]
    assert argv[4:] == [str(a) for a in args]


@FAST
@given(owner=hostile, port=st.one_of(st.integers(-5, 70000), st.just(3260)))
def test_firewall_commands_refuse_or_round_trip(owner: str, port: int) -> None:
    try:
        line = firewall.open_command(port, owner)
    except shell.UnsafeValueError:
        return
    assert shlex.split(line)[4:] == [str(port), firewall.MARKER_DIR, owner]


class Recorder:
    """A Runner that records each command line and answers like an empty host."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, line: str) -> CommandResult:
        self.lines.append(line)
        return CommandResult(0, "", "")


BACKENDS: dict[str, type[TgtBackend] | type[TargetcliBackend]] = {"tgt": TgtBackend, "targetcli": TargetcliBackend}
GOOD = TargetSpec(iqn="iqn.2026-11.io.labbot:lab1", device="/dev/vdb", initiator_iqn="iqn.2026-11.io.labbot:init",
                  portal_ip="10.0.0.5", port=3260)


@settings(max_examples=150, deadline=None, database=None)
@given(field=st.sampled_from(["iqn", "device", "initiator_iqn", "portal_ip"]), value=hostile,
       backend=st.sampled_from(["tgt", "targetcli"]))
def test_iscsi_backends_refuse_a_hostile_spec_before_running_anything(field: str, value: str, backend: str) -> None:
    validator = {"iqn": shell.iqn, "device": shell.device_path, "initiator_iqn": shell.iqn,
                 "portal_ip": shell.ipv4}[field]
    try:
        validator(value)
    except shell.UnsafeValueError:
        pass
    else:
        return  # a value the validator accepts is shell-inert (first test); nothing hostile to follow here
    recorder = Recorder()
    with pytest.raises(shell.UnsafeValueError):  # the spec itself, or the backend, refuses it
        asyncio.run(BACKENDS[backend](recorder).ensure(TargetSpec(**{**GOOD.__dict__, field: value})))
    leaked = [line for line in recorder.lines if value in line]
    assert leaked == [], leaked


@FAST
@given(vm1=hostile, vm2=hostile, user=st.one_of(hostile, st.just("root")))
def test_access_commands_people_copy_into_their_shell(vm1: str, vm2: str, user: str) -> None:
    """Addresses come from the lab platform, not from labbot: a hostile answer must not become a command that
    someone pastes into their terminal."""
    try:
        info = access_commands(vm1, 22, vm2, user)
    except shell.UnsafeValueError:
        return
    for _, line in info.lines():
        assert all(shlex.quote(word) == word for word in shlex.split(line)), line
