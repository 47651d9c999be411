"""Validators of values that reach a shell accept the whole value or nothing: no trailing newline slips by.

``re.match`` with ``$`` accepts ``"value\\n"``, and a newline in a remote command line starts a new command.
"""

from __future__ import annotations

import pytest

from services import shell
from services.commands import parse_command
from services.errors import CommandError

GOOD = {
    shell.lab_name: "demo-1", shell.identifier: "vm1", shell.job_name: "install_zstack", shell.iqn:
    "iqn.2026-11.io.labbot:demo", shell.device_path: "/dev/disk/by-id/virtio-0fcd9bedc73a559ea61e",
    shell.safe_path: "root/labbot/installer.bin", shell.username: "root", shell.hex_string: "0fcd9bed",
}


@pytest.mark.parametrize("validator", list(GOOD), ids=lambda v: v.__name__)
@pytest.mark.parametrize("tail", ["\n", "\r\n", "\n; reboot"])
def test_a_valid_value_with_a_line_break_is_refused(validator, tail: str) -> None:
    value = GOOD[validator]
    assert validator(value) == value
    with pytest.raises(shell.UnsafeValueError):
        validator(value + tail)


@pytest.mark.parametrize("text", ["status demo\n", "logs demo install_zstack\n", "create demo --profile zcct\n"])
def test_the_grammar_ignores_a_trailing_newline_but_never_keeps_it(text: str) -> None:
    try:
        command = parse_command(text)
    except CommandError:
        return
    assert all("\n" not in str(v) for v in vars(command).values())

