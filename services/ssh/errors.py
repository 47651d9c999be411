"""Errors of the SSH layer, all ``ExternalError`` with ``system = "ssh"``.

    SSHError                    anything that went wrong talking to a lab VM over SSH
    ├── SSHUnreachableError     no TCP connection / the connection dropped (retry later)
    ├── SSHAuthError            the VM refused our key
    ├── HostKeyChangedError     the VM presented a different host key than the one pinned (possible interception)
    ├── SSHCommandError         a command exited non-zero (exit status and output tails attached)
    ├── SSHTimeoutError         a command or connection took too long (partial output attached)
    └── SSHOutputLimitError     a command printed more than labbot reads; it was cut off (output tails attached)

Messages name the lab and host and never contain key material or passwords. Output tails are kept short so
they fit in a chat message.
"""

from __future__ import annotations

from services.errors import ExternalError
from services.i18n import _

TAIL_LINES = 15
TAIL_CHARS = 2000


def tail(text: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    """The last ``lines`` lines of ``text``, at most ``chars`` characters (for error messages)."""
    # Only the end can matter: splitting megabytes of a VM's output into lines would cost the event loop.
    kept = "\n".join(text.rstrip("\n")[-4 * chars :].splitlines()[-lines:])
    return kept[-chars:]


def _short(command: str, limit: int = 160) -> str:
    one_line = " ".join(command.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."


class SSHError(ExternalError):
    """Something went wrong talking to a lab VM over SSH."""

    system = "ssh"

    def __init__(self, message: str, *, lab: str = "", host: str = "") -> None:
        super().__init__(message)
        self.lab = lab
        self.host = host


class SSHUnreachableError(SSHError):
    """The VM could not be reached, or the connection dropped; usually worth retrying later."""


class SSHAuthError(SSHError):
    """The VM refused labbot's key for the user."""


class HostKeyChangedError(SSHError):
    """The VM's host key is not the one pinned on first use: the connection is refused."""

    def __init__(self, *, lab: str, host: str, old_fingerprint: str, new_fingerprint: str) -> None:
        super().__init__(
            _(
                "SSH host key of {host} in lab {lab} changed (possible interception): pinned "
                "{old_fingerprint}, offered {new_fingerprint}. labbot refuses to connect; if the VM was really "
                "rebuilt, an admin must forget the pinned key."
            ).format(host=host, lab=lab, old_fingerprint=old_fingerprint, new_fingerprint=new_fingerprint),
            lab=lab,
            host=host,
        )
        self.old_fingerprint = old_fingerprint
        self.new_fingerprint = new_fingerprint


class SSHCommandError(SSHError):
    """A command exited with a non-zero status."""

    def __init__(self, *, lab: str, host: str, command: str, exit_status: int, stdout: str, stderr: str) -> None:
        self.command = command
        self.exit_status = exit_status
        self.stdout_tail = tail(stdout)
        self.stderr_tail = tail(stderr)
        detail = self.stderr_tail or self.stdout_tail or _("(no output)")
        super().__init__(
            _("`{short}` on {host} exited with status {exit_status}:\n{detail}").format(
                short=_short(command), host=host, exit_status=exit_status, detail=detail
            ),
            lab=lab,
            host=host,
        )


class SSHTimeoutError(SSHError):
    """A command (or a wait) took longer than allowed; the output so far is kept."""

    def __init__(
        self, *, lab: str, host: str, command: str, timeout: float, stdout: str = "", stderr: str = ""
    ) -> None:
        self.command = command
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr
        detail = tail(stderr) or tail(stdout)
        message = _("`{short}` on {host} did not finish within {timeout:g}s").format(
            short=_short(command), host=host, timeout=timeout
        )
        super().__init__(
            message + (_("; last output:\n{detail}").format(detail=detail) if detail else ""), lab=lab, host=host
        )


class SSHOutputLimitError(SSHError):
    """A command printed more than labbot reads: reading stopped and the channel was closed, outcome unknown.

    Only the output's tails are kept (the lab VM decides what it prints, so nothing more is worth holding).
    """

    def __init__(self, *, lab: str, host: str, command: str, limit: int, stdout: str = "", stderr: str = "") -> None:
        self.command = command
        self.limit = limit
        self.stdout_tail = tail(stdout)
        self.stderr_tail = tail(stderr)
        detail = self.stderr_tail or self.stdout_tail
        message = _(
            "`{short}` on {host} printed more than {limit:,} characters; labbot stopped reading and "
            "closed it (output truncated)"
        ).format(short=_short(command), host=host, limit=limit)
        super().__init__(
            message + (_("; last output:\n{detail}").format(detail=detail) if detail else ""), lab=lab, host=host
        )
