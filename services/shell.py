"""Validation and quoting for every value that reaches a remote (or local) shell.

labbot builds shell command lines for the lab VMs (SSH ``run``, the iSCSI backends, detached jobs). Each value
interpolated into such a line is first checked against the narrow shape it must have (an IQN, an IPv4 address,
a device path ...) and then passed through ``quote``. Validation catches nonsense early with a clear message;
quoting makes the line safe even if a validator were too lenient. Never interpolate a secret: command lines
show up in ``ps`` on the remote host and in error messages.

Each validator returns the value unchanged (so it can be used inline) or raises ``UnsafeValueError``, which is
both a ``CommandError`` (shown to the user as-is) and a ``ValueError`` (for pydantic and plain callers).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import shlex

from services.errors import CommandError

log = logging.getLogger(__name__)

_LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,29}[a-z0-9]$")
# Lab identifiers in remote paths: a lab name or a lab uuid (hex, with or without dashes).
_IDENTIFIER = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,47}$")
# RFC 3720 iqn. names, as labbot makes and accepts them: lower case, no spaces, at most 223 bytes.
_IQN = re.compile(r"^iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:[a-z0-9][a-z0-9.:_-]*)?$")
_DEVICE = re.compile(r"^/[A-Za-z0-9._/:+-]+$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/+@=-]+$")
_USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HEX = re.compile(r"^[0-9a-f]+$")


class UnsafeValueError(CommandError, ValueError):
    """A value that must not reach a shell in this shape; the message says what was expected."""


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= 60 and text.isprintable() else repr(text[:60])


def lab_name(value: str) -> str:
    """A lab name: 2-31 lower-case letters, digits and hyphens, starting with a letter."""
    if not isinstance(value, str) or not _LAB_NAME.fullmatch(value):
        raise UnsafeValueError(
            f"`{_shown(value)}` is not a valid lab name: use 2-31 lower-case letters, digits and hyphens"
        )
    return value


def identifier(value: str) -> str:
    """A lab identifier used in remote paths (a lab name or uuid): lower-case letters, digits, hyphens."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise UnsafeValueError(f"`{_shown(value)}` is not a valid identifier (lower-case letters, digits, hyphens)")
    return value


def job_name(value: str) -> str:
    """A detached job's name: lower-case letters, digits, ``_ . -``; at most 48 characters."""
    if not isinstance(value, str) or not _JOB_NAME.fullmatch(value) or ".." in value:
        raise UnsafeValueError(f"`{_shown(value)}` is not a valid job name (lower-case letters, digits, _ . -)")
    return value


def iqn(value: str) -> str:
    """An iSCSI qualified name such as ``iqn.2026-11.io.labbot:lab1`` (lower case, at most 223 bytes)."""
    if not isinstance(value, str) or len(value.encode()) > 223 or not _IQN.fullmatch(value):
        raise UnsafeValueError(f"`{_shown(value)}` is not a valid iSCSI name (iqn.YYYY-MM.reversed.domain[:name])")
    return value


def ipv4(value: str) -> str:
    """A dotted-quad IPv4 address in canonical form (no leading zeros, no host names)."""
    try:
        address = ipaddress.IPv4Address(value)
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise UnsafeValueError(f"`{_shown(value)}` is not an IPv4 address") from None
    if str(address) != value:
        raise UnsafeValueError(f"`{_shown(value)}` is not a canonical IPv4 address")
    return value


def port(value: int) -> int:
    """A TCP port number, 1-65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise UnsafeValueError(f"`{_shown(value)}` is not a TCP port (1-65535)")
    return value


def device_path(value: str) -> str:
    """An absolute device path such as ``/dev/sdb`` or ``/dev/disk/by-id/virtio-...``."""
    if not isinstance(value, str) or not _DEVICE.fullmatch(value) or _has_dot_segments(value):
        raise UnsafeValueError(f"`{_shown(value)}` is not an absolute device path such as /dev/sdb")
    return value


def safe_path(value: str, *, absolute: bool = False) -> str:
    """A file path made of plain characters, without ``..`` segments and not starting with ``-``."""
    ok = (
        isinstance(value, str)
        and bool(_SAFE_PATH.fullmatch(value))
        and not value.startswith("-")
        and not _has_dot_segments(value)
        and (value.startswith("/") or not absolute)
    )
    if not ok:
        kind = "an absolute file path" if absolute else "a file path"
        raise UnsafeValueError(f"`{_shown(value)}` is not {kind} of plain characters")
    return value


def username(value: str) -> str:
    """A POSIX user name such as ``root``."""
    if not isinstance(value, str) or not _USERNAME.fullmatch(value):
        raise UnsafeValueError(f"`{_shown(value)}` is not a valid user name")
    return value


def hex_string(value: str, *, min_length: int = 1, max_length: int = 64) -> str:
    """Lower-case hexadecimal digits (uuids without dashes, serial prefixes)."""
    if not isinstance(value, str) or not _HEX.fullmatch(value) or not min_length <= len(value) <= max_length:
        raise UnsafeValueError(f"`{_shown(value)}` is not {min_length}-{max_length} lower-case hex digits")
    return value


def quote(value: str | int) -> str:
    """``shlex.quote`` for a validated value (ints are converted, so ports can be passed directly)."""
    return shlex.quote(str(value))


def sh_c(body: str, *args: str | int) -> str:
    """``sh -c BODY labbot ARG…``: a script whose values arrive as ``$1 $2 …`` (``$0`` is ``labbot``), never inside
    its text, so no value is ever parsed as shell code."""
    return " ".join(["sh", "-c", quote(body), "labbot", *(quote(arg) for arg in args)])


def join(argv: list[str | int]) -> str:
    """A command line from already-validated arguments, each quoted."""
    return " ".join(quote(arg) for arg in argv)


def _has_dot_segments(path: str) -> bool:
    return any(part in {".", ".."} for part in path.split("/"))
