"""Bolt listeners, one module per feature; ``register(app)`` wires them all."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from handlers.slack import commands, create_modal, home, lab_actions


def register(app: AsyncApp) -> None:
    """Register every Slack listener on ``app``."""
    commands.register(app)
    lab_actions.register(app)
    create_modal.register(app)
    home.register(app)
