"""Validators refuse anything outside the narrow shape a value must have before it reaches a shell."""

from __future__ import annotations

import shlex

import pytest

from services import shell
from services.errors import CommandError


@pytest.mark.parametrize("value", ["lab1", "ab", "team-a-lab", "a" * 31])
def test_lab_names_accepted(value: str) -> None:
    assert shell.lab_name(value) == value


@pytest.mark.parametrize("value", ["", "a", "1lab", "Lab1", "lab_1", "lab-", "a" * 32, "lab;rm -rf /", "lab 1"])
def test_lab_names_refused(value: str) -> None:
    with pytest.raises(shell.UnsafeValueError, match="not a valid lab name"):
        shell.lab_name(value)


def test_unsafe_value_is_both_a_command_error_and_a_value_error() -> None:
    with pytest.raises(CommandError):
        shell.ipv4("1.2.3")
    with pytest.raises(ValueError):
        shell.ipv4("1.2.3")


@pytest.mark.parametrize(
    "value", ["iqn.2026-11.io.labbot:lab1", "iqn.1994-05.com.redhat:8d6c1f2ae3", "iqn.2026-11.io.labbot"]
)
def test_iqns_accepted(value: str) -> None:
    assert shell.iqn(value) == value


@pytest.mark.parametrize(
    "value", ["iqn.26-11.io.x:y", "IQN.2026-11.io.labbot:a", "iqn.2026-11.io.labbot:a b", "iqn.2026-11.x:$(id)",
              "eui.02004567A425678D", "iqn.2026-11.io.labbot:" + "a" * 220]
)
def test_iqns_refused(value: str) -> None:
    with pytest.raises(shell.UnsafeValueError):
        shell.iqn(value)


@pytest.mark.parametrize("value", ["198.18.0.10", "0.0.0.0", "10.0.0.1"])
def test_ipv4_accepted(value: str) -> None:
    assert shell.ipv4(value) == value


@pytest.mark.parametrize("value", ["198.18.0.010", "198.18.0", "::1", "host.example", "1.2.3.4 ", "256.1.1.1"])
def test_ipv4_refused(value: str) -> None:
    with pytest.raises(shell.UnsafeValueError):
        shell.ipv4(value)


@pytest.mark.parametrize("value", [0, 65536, -1, True, "22"])
def test_ports_refused(value: object) -> None:
    with pytest.raises(shell.UnsafeValueError):
        shell.port(value)  # type: ignore[arg-type]


def test_device_paths() -> None:
    by_id = "/dev/disk/by-id/virtio-0123456789abcdef0123"
    assert shell.device_path(by_id) == by_id
    for bad in ["dev/sdb", "/dev/../etc/shadow", "/dev/sd b", "/dev/sdb;reboot", "/dev/$(id)"]:
        with pytest.raises(shell.UnsafeValueError):
            shell.device_path(bad)


def test_safe_paths() -> None:
    assert shell.safe_path("/root/labbot/zstack-installer.bin", absolute=True)
    assert shell.safe_path("relative/file.txt") == "relative/file.txt"
    for bad in ["relative", "-rf", "/a/../b", "/a/b c", "/a/`id`"]:
        with pytest.raises(shell.UnsafeValueError):
            shell.safe_path(bad, absolute=True)


def test_job_names_and_identifiers() -> None:
    assert shell.job_name("install_zstack") == "install_zstack"
    assert shell.identifier("0f1e2d3c4b5a69788796a5b4c3d2e1f0") == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    for bad in ["..", "a/b", "A", ""]:
        with pytest.raises(shell.UnsafeValueError):
            shell.job_name(bad)


def test_quote_round_trips_through_a_shell_parser() -> None:
    nasty = "it's $(rm -rf /) `id` \"x\" ; | &"
    assert shlex.split(f"echo {shell.quote(nasty)}") == ["echo", nasty]
    assert shell.quote(3260) == "3260"
    assert shlex.split(shell.join(["tgtadm", "--tid", 1, "-T", "iqn.2026-11.io.labbot:a"])) == [
        "tgtadm", "--tid", "1", "-T", "iqn.2026-11.io.labbot:a",
    ]


def test_error_message_does_not_echo_control_characters() -> None:
    with pytest.raises(shell.UnsafeValueError) as caught:
        shell.lab_name("evil\x1b[31mname")
    assert "\x1b" not in str(caught.value)
