"""Identifiers and round-trip state shared by the Block Kit builders and the Bolt listeners.

Every ``action_id``/``block_id``/``callback_id`` is an Enum member, used both where blocks are built and where
listeners are registered, so a renamed id cannot leave a button without a listener. State that crosses a Slack
round trip (button values, select option values, ``private_metadata``) is a small pydantic model, parsed on
the way back with ``parse_value`` so a stale or forged value becomes a user-facing error, not a traceback.
"""

from __future__ import annotations

import enum
import logging
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.errors import CommandError
from services.i18n import _

log = logging.getLogger(__name__)


class LabAction(enum.StrEnum):
    """``action_id`` of every interactive element labbot puts in messages and views."""

    EXTEND = "lab_extend"
    RETRY = "lab_retry"
    HEALTH = "lab_health"
    LOGS = "lab_logs"
    ACCESS = "lab_access"
    DESTROY = "lab_destroy"
    CANCEL = "lab_cancel"
    OPEN_CREATE = "lab_open_create"


class CardBlock(enum.StrEnum):
    """``block_id`` of the blocks a handler or a test needs to find again."""

    HEADER = "lab_header"
    FIELDS = "lab_fields"
    STEPS = "lab_steps"  # the current step (or the failure, or a ready lab's addresses)
    NEXT = "lab_next"
    ACTIONS = "lab_actions"
    LAST_ACTION = "lab_last_action"


class CreateField(enum.StrEnum):
    """``block_id`` (and ``action_id``) of each input of the create-lab modal."""

    NAME = "create_name"
    PROFILE = "create_profile"
    TTL = "create_ttl"


class ViewId(enum.StrEnum):
    """``callback_id`` of the modals labbot opens."""

    CREATE_LAB = "lab_create"


class LabRef(BaseModel):
    """Which lab a button acts on. The id guards against a card outliving its lab and a new lab taking its name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lab_id: int = Field(ge=1)
    name: str = Field(min_length=1, max_length=31)


class ExtendChoice(LabRef):
    """One option of the card's Extend menu: the lab and how much longer."""

    duration: str = Field(pattern=r"^\d{1,4}[mhd]$")


class CreateModalMeta(BaseModel):
    """Where the create modal was opened from, so the lab's card and any error land in that channel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel_id: str | None = Field(default=None, max_length=64)


Model = TypeVar("Model", bound=BaseModel)


def encode(value: BaseModel) -> str:
    """Compact JSON for a button value, option value or ``private_metadata``."""
    return value.model_dump_json(exclude_none=True)


def parse_value(model: type[Model], raw: str | None) -> Model:
    """Parse round-trip state; a value this labbot did not write is a CommandError the user can read."""
    try:
        return model.model_validate_json(raw or "")
    except ValidationError:
        log.warning("unreadable %s from Slack: %r", model.__name__, (raw or "")[:200])
        raise CommandError(_("that button or form is out of date; run the command again")) from None
