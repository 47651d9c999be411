"""The create-lab modal (``/lab create`` with no arguments) and the parsing of what was submitted.

Validation that needs no database (name syntax, profile, TTL against the profile's maximum) happens here, so
the submission can be answered with field errors inside Slack's 3 seconds; quotas and name clashes are the
service's to check afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.blocks import format as fmt
from bot.blocks.ids import CreateField, CreateModalMeta, ViewId, encode
from bot.blocks.kit import MAX_PRIVATE_METADATA, clip, option, plain
from config.profiles import LabProfile
from config.settings import parse_duration
from services.commands import validate_lab_name
from services.errors import CommandError
from services.i18n import _

log = logging.getLogger(__name__)

TTL_CHOICES = ("1h", "2h", "4h", "8h", "1d", "2d", "3d")


@dataclass(frozen=True)
class CreateForm:
    """A submitted, syntactically valid create form."""

    name: str | None
    profile: str
    ttl: timedelta | None


def build_create_modal(
    *, profiles: Mapping[str, LabProfile], default_profile: str, meta: CreateModalMeta
) -> dict[str, Any]:
    """The modal view: lab name (optional), profile, TTL (optional: the profile's default)."""
    profile_options = [
        option(clip(f"{name} — {p.description}" if p.description else name, 75), name)
        for name, p in sorted(profiles.items())
    ]
    initial = next((o for o in profile_options if o["value"] == default_profile), profile_options[0])
    longest = max(p.max_ttl for p in profiles.values())
    ttl_options = [
        option(fmt.short_duration(parse_duration(c)), c) for c in TTL_CHOICES if parse_duration(c) <= longest
    ]
    defaults = ", ".join(f"{n}: {p.ttl_default} (max {p.ttl_max})" for n, p in sorted(profiles.items()))
    metadata = encode(meta)
    if len(metadata) > MAX_PRIVATE_METADATA:
        raise ValueError("private_metadata too long")
    return {
        "type": "modal",
        "callback_id": ViewId.CREATE_LAB,
        "title": plain(_("New lab"), 24),
        "submit": plain(_("Create"), 24),
        "close": plain(_("Cancel"), 24),
        "private_metadata": metadata,
        "blocks": [
            {
                "type": "input",
                "block_id": CreateField.NAME,
                "optional": True,
                "label": plain(_("Lab name")),
                "hint": plain(_("2-31 lower-case letters, digits and hyphens. Leave empty for a generated name.")),
                "element": {
                    "type": "plain_text_input",
                    "action_id": CreateField.NAME,
                    "max_length": 31,
                    "placeholder": plain(_("e.g. zcct-alice")),
                },
            },
            {
                "type": "input",
                "block_id": CreateField.PROFILE,
                "label": plain(_("Profile")),
                "element": {
                    "type": "static_select",
                    "action_id": CreateField.PROFILE,
                    "options": profile_options[:100],
                    "initial_option": initial,
                },
            },
            {
                "type": "input",
                "block_id": CreateField.TTL,
                "optional": True,
                "label": plain(_("Lifetime")),
                "hint": plain(clip(_("Default and maximum per profile: {defaults}").format(defaults=defaults), 2000)),
                "element": {
                    "type": "static_select",
                    "action_id": CreateField.TTL,
                    "placeholder": plain(_("The profile's default")),
                    "options": ttl_options,
                },
            },
        ],
    }


def parse_create_form(
    values: Mapping[str, Mapping[str, Any]], profiles: Mapping[str, LabProfile]
) -> CreateForm | dict[str, str]:
    """The form's values, or ``{block_id: message}`` for Slack to show next to each bad field."""
    errors: dict[str, str] = {}
    name = (_value(values, CreateField.NAME) or "").strip() or None
    if name is not None:
        try:
            validate_lab_name(name)
        except CommandError as err:
            errors[CreateField.NAME] = clip(err.message, 150)
    profile_name = _value(values, CreateField.PROFILE) or ""
    profile = profiles.get(profile_name)
    if profile is None:
        errors[CreateField.PROFILE] = _("Pick one of the profiles.")
    ttl_text = _value(values, CreateField.TTL)
    ttl = None
    if ttl_text:
        try:
            ttl = parse_duration(ttl_text)
        except ValueError:
            errors[CreateField.TTL] = _("Pick one of the lifetimes.")
        else:
            if profile is not None and ttl > profile.max_ttl:
                errors[CreateField.TTL] = _("A {profile_name} lab may live at most {ttl_max}.").format(
                    profile_name=profile_name, ttl_max=profile.ttl_max
                )
    if errors:
        return errors
    return CreateForm(name=name, profile=profile_name, ttl=ttl)


def _value(values: Mapping[str, Mapping[str, Any]], field: CreateField) -> str | None:
    """The value of one input, whether it is a text input or a select."""
    element = values.get(field, {}).get(field) or {}
    if element.get("type") == "static_select":
        selected = element.get("selected_option") or {}
        return selected.get("value")
    value = element.get("value")
    return value if isinstance(value, str) else None
