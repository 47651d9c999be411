"""The one error ``config`` raises: invalid settings or lab profile.

``config`` is the bottom layer (every other package reads it), so it imports nothing from ``services``;
``services.errors.ConfigError`` extends this class into labbot's error tree, and a caller that catches this
one catches both.
"""

from __future__ import annotations


class ConfigError(Exception):
    """Settings or a lab profile are invalid; the message names the variable, or the file and field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def user_message(self) -> str:
        """Text that is safe to show (names and reasons, never a secret's value)."""
        return self.message
