"""The /lab access content: exact commands to reach VM1, VM2 and VM2's UI through the jump host."""

from __future__ import annotations

import pytest

from services.shell import UnsafeValueError
from services.ssh.access import access_commands


def test_commands_on_the_default_port() -> None:
    info = access_commands("198.18.0.10", 22, "198.19.0.11", "root")
    assert info.ssh_vm1 == "ssh root@198.18.0.10"
    assert info.ssh_vm2 == "ssh -J root@198.18.0.10 root@198.19.0.11"
    assert info.ui_tunnel == "ssh -N -L 5000:198.19.0.11:5000 root@198.18.0.10"
    assert info.ui_url == "http://localhost:5000"
    assert info.api_tunnel == "ssh -N -L 8080:198.19.0.11:8080 root@198.18.0.10"
    assert info.api_url == "http://localhost:8080/zstack/v1"
    assert info.ui_url_on_vm1 == "http://198.19.0.11:5000"
    assert [label for label, _ in info.lines()][:2] == ["SSH to VM1 (jump host)", "SSH to VM2 through VM1"]


def test_commands_with_a_non_default_ssh_port_and_ui_port() -> None:
    info = access_commands("198.18.0.10", 2222, "198.19.0.11", "zstack", ui_port=5443)
    assert info.ssh_vm1 == "ssh -p 2222 zstack@198.18.0.10"
    assert info.ssh_vm2 == "ssh -J zstack@198.18.0.10:2222 zstack@198.19.0.11"
    assert info.ui_tunnel == "ssh -p 2222 -N -L 5443:198.19.0.11:5443 zstack@198.18.0.10"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("198.18.0.10; rm -rf /", 22, "198.19.0.11", "root"), "not an IPv4 address"),
        (("198.18.0.10", 22, "vm2.example", "root"), "not an IPv4 address"),
        (("198.18.0.10", 0, "198.19.0.11", "root"), "not a TCP port"),
        (("198.18.0.10", 22, "198.19.0.11", "root -oProxyCommand=x"), "not a valid user name"),
    ],
)
def test_refuses_values_that_would_change_the_command(args: tuple, message: str) -> None:
    with pytest.raises(UnsafeValueError, match=message):
        access_commands(*args)
