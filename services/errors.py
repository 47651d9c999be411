"""labbot's error hierarchy, shared by every layer.

    LabbotError                 anything labbot raises on purpose; ``user_message`` is safe to show
    ├── CommandError            a command line that does not parse (services.commands)
    ├── ConfigError             bad settings or lab profile
    ├── NotFoundError           no such lab (or step, or resource)
    ├── PermissionDeniedError   not the owner or an admin
    ├── QuotaError              too many live labs, TTL over the maximum, no capacity
    ├── ConflictError           a name already taken, a state that forbids the action
    │   ├── InvalidTransitionError   an edge the lab state machine does not have
    │   └── StaleWriteError          optimistic lock lost: someone else changed the lab first
    └── ExternalError           a remote system failed (ZStack, SSH, iSCSI); carries what it said

Front ends translate these once, at the edge: a ``LabbotError`` becomes its ``user_message``; anything else
becomes a short error id that is logged with its traceback.
"""

from __future__ import annotations

from config.errors import ConfigError as SettingsError
from services.i18n import _


class LabbotError(Exception):
    """Base of every error labbot raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def user_message(self) -> str:
        """Text that is safe to show to the person who asked (no secrets, no tracebacks)."""
        return self.message


class CommandError(LabbotError):
    """A command line that does not parse; the message says what was wrong and shows the usage."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.usage = usage

    @property
    def user_message(self) -> str:
        return (
            _("{message}\nUsage: `{usage}`").format(message=self.message, usage=self.usage)
            if self.usage
            else self.message
        )


class ConfigError(LabbotError, SettingsError):
    """Settings, a lab profile or another configured value are invalid (``config`` raises the base class)."""


class NotFoundError(LabbotError):
    """The thing asked for does not exist."""


class PermissionDeniedError(LabbotError):
    """The caller may not do this."""


class QuotaError(LabbotError):
    """A limit (labs per user, global labs, TTL, platform capacity) forbids this."""


class ConflictError(LabbotError):
    """The current state forbids the action (name taken, lab busy, ...)."""


class InvalidTransitionError(ConflictError):
    """The lab state machine has no such edge."""


class StaleWriteError(ConflictError):
    """Someone else changed the record first (optimistic lock)."""


class ExternalError(LabbotError):
    """A remote system failed; ``system`` names it (``zstack``, ``ssh``, ``iscsi``, ``slack``)."""

    system = "external"
