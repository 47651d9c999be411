"""Finding the VM2 NIC that holds VM2's address (the nested L2's physicalInterface), and refusing what is odd."""

from __future__ import annotations

import pytest

from services.labs.build.interfaces import InterfaceNotFoundError, interface_carrying, parse_interface
from services.ssh.result import CommandResult

# `ip -o -4 addr show` on a ZStack ISO install: predictable names, not eth0.
LISTING = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: ens3    inet 192.168.100.3/24 brd 192.168.100.255 scope global dynamic noprefixroute ens3\\       valid_lft 86000sec
3: virbr0    inet 192.168.122.1/24 brd 192.168.122.255 scope global virbr0\\       valid_lft forever
"""


async def test_the_interface_holding_the_address_is_found_over_a_bounded_command() -> None:
    commands: list[str] = []

    async def run(command: str) -> CommandResult:
        commands.append(command)
        return CommandResult(0, LISTING, "")

    assert await interface_carrying(run, "192.168.100.3") == "ens3"
    assert commands == ["ip -o -4 addr show | head -c 65536"]


def test_a_missing_address_or_an_unusable_name_is_a_clear_error() -> None:
    with pytest.raises(InterfaceNotFoundError, match=r"no interface holds 10.0.0.9 \(seen: lo 127.0.0.1, ens3"):
        parse_interface(LISTING, "10.0.0.9")
    with pytest.raises(InterfaceNotFoundError, match="unusable name"):
        parse_interface("2: e$(reboot)    inet 10.0.0.9/24 scope global\n", "10.0.0.9")
    assert parse_interface("5: eth1@if12    inet 10.0.0.9/24 scope global eth1\n", "10.0.0.9") == "eth1"


async def test_a_failed_listing_says_so() -> None:
    async def run(command: str) -> CommandResult:
        return CommandResult(127, "", "sh: ip: not found\n")

    with pytest.raises(InterfaceNotFoundError, match="ip: not found"):
        await interface_carrying(run, "10.0.0.9")
