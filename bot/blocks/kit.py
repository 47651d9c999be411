"""Small Block Kit constructors and the limits every builder stays within.

Builders compose these instead of writing dicts inline, so text is clipped to Slack's per-field limits in one
place, and ``fit_blocks`` keeps a whole message under the block count and aggregate size Slack accepts (plain
dict blocks are never validated by slack_sdk, and Slack answers ``invalid_blocks``/``msg_blocks_too_long``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from services.i18n import _, ngettext

log = logging.getLogger(__name__)

Block = dict[str, Any]

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_ACTION_ELEMENTS = 25
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
MAX_MODAL_TITLE = 24
MAX_PRIVATE_METADATA = 3000
# Slack rejects messages whose blocks hold more than about 13.2k characters (undocumented); stay well below.
MAX_MESSAGE_CHARS = 12_000
MAX_FALLBACK_TEXT = 3000
ELLIPSIS = "…"


@dataclass(frozen=True)
class Message:
    """A message ready for chat.postMessage / chat.update / respond: fallback text plus blocks."""

    text: str
    blocks: list[Block] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments the Web API and ``respond`` take."""
        return {"text": self.text, "blocks": self.blocks}


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending with an ellipsis when something was cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS


def clip_tail(text: str, limit: int) -> str:
    """The last ``limit`` characters of ``text`` (output tails matter at their end), marked when cut."""
    return text if len(text) <= limit else ELLIPSIS + text[-(limit - 1) :]


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code_block(text: str, limit: int = MAX_SECTION_TEXT) -> str:
    """A preformatted block of (escaped) output, keeping its tail when it is too long for a section."""
    # A fence inside the output would end the block early; break it with zero-width spaces.
    body = escape(text.replace("```", "`\u200b`\u200b`"))
    return "```" + clip_tail(body, limit - 6) + "```"


def mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    """A mrkdwn text object."""
    return {"type": "mrkdwn", "text": clip(text, limit) or " "}


def plain(text: str, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    """A plain_text text object (emoji shortcodes allowed)."""
    return {"type": "plain_text", "text": clip(text, limit) or " ", "emoji": True}


def header(text: str, block_id: str | None = None) -> Block:
    """A header block."""
    block: Block = {"type": "header", "text": plain(text, MAX_HEADER_TEXT)}
    if block_id:
        block["block_id"] = block_id
    return block


def section(text: str, *, block_id: str | None = None, fields: list[str] | None = None) -> Block:
    """A mrkdwn section, optionally with up to ten two-column fields."""
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if fields:
        block["fields"] = [mrkdwn(f, MAX_FIELD_TEXT) for f in fields[:MAX_FIELDS]]
    if block_id:
        block["block_id"] = block_id
    return block


def fields_section(fields: list[str], *, block_id: str | None = None) -> Block:
    """A section made only of two-column fields."""
    block: Block = {"type": "section", "fields": [mrkdwn(f, MAX_FIELD_TEXT) for f in fields[:MAX_FIELDS]]}
    if block_id:
        block["block_id"] = block_id
    return block


def context(*texts: str, block_id: str | None = None) -> Block:
    """A context block of mrkdwn snippets (small grey text)."""
    block: Block = {"type": "context", "elements": [mrkdwn(t) for t in texts[:MAX_CONTEXT_ELEMENTS]]}
    if block_id:
        block["block_id"] = block_id
    return block


def divider() -> Block:
    """A divider block."""
    return {"type": "divider"}


def confirm(title: str, text: str, yes: str, no: str | None = None, *, danger: bool = True) -> dict[str, Any]:
    """A confirmation dialog object, clipped to Slack's limits."""
    no = no or _("Cancel")
    dialog: dict[str, Any] = {
        "title": plain(title, MAX_CONFIRM_TITLE),
        "text": mrkdwn(text, MAX_CONFIRM_TEXT),
        "confirm": plain(yes, MAX_CONFIRM_BUTTON),
        "deny": plain(no, MAX_CONFIRM_BUTTON),
    }
    if danger:
        dialog["style"] = "danger"
    return dialog


def button(
    text: str,
    action_id: str,
    value: str,
    *,
    style: str | None = None,
    confirm_dialog: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A button element; ``style`` is ``primary`` or ``danger``."""
    element: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": plain(text, MAX_BUTTON_TEXT),
        "value": value,
    }
    if style:
        element["style"] = style
    if confirm_dialog:
        element["confirm"] = confirm_dialog
    return element


def option(text: str, value: str) -> dict[str, Any]:
    """One option of a select menu."""
    if len(value) > MAX_OPTION_VALUE:
        raise ValueError(f"option value longer than {MAX_OPTION_VALUE} characters")
    return {"text": plain(text, MAX_OPTION_TEXT), "value": value}


def static_select(placeholder: str, action_id: str, options: list[dict[str, Any]]) -> dict[str, Any]:
    """A static select menu."""
    return {
        "type": "static_select",
        "action_id": action_id,
        "placeholder": plain(placeholder, 150),
        "options": options[:100],
    }


def actions(elements: list[dict[str, Any]], *, block_id: str | None = None) -> Block:
    """An actions block (at most 25 elements)."""
    block: Block = {"type": "actions", "elements": elements[:MAX_ACTION_ELEMENTS]}
    if block_id:
        block["block_id"] = block_id
    return block


def text_size(blocks: list[Block]) -> int:
    """Characters of text in ``blocks``: every string value, which over-counts Slack's measure a little."""
    total = 0

    def walk(value: Any) -> None:
        nonlocal total
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(blocks)
    return total


def fit_blocks(blocks: list[Block], *, max_blocks: int = MAX_MESSAGE_BLOCKS, max_chars: int = MAX_MESSAGE_CHARS,
               keep_last: int = 0) -> list[Block]:
    """Drop blocks from before the last ``keep_last`` until the message fits, saying how many were left out.

    Builders put the important blocks first and the actions last (``keep_last``), so what is dropped is detail
    that also lives in the thread or behind the Logs button.
    """
    head, tail = (blocks[:-keep_last], blocks[-keep_last:]) if keep_last else (list(blocks), [])
    dropped = 0
    while head and (len(head) + len(tail) + (1 if dropped else 0) > max_blocks
                    or text_size(head + tail) + 80 > max_chars):
        head.pop()
        dropped += 1
    if dropped:
        log.debug("message too large for Slack: left out %d blocks", dropped)
        left_out = ngettext("_{n} more block left out (Slack's size limit)_",
                            "_{n} more blocks left out (Slack's size limit)_", dropped).format(n=dropped)
        head.append(context(left_out))
    return head + tail


def fallback(text: str) -> str:
    """Top-level ``text`` (notifications, screen readers), kept short."""
    return clip(text, MAX_FALLBACK_TEXT)


def dumps(blocks: list[Block]) -> str:
    """Stable JSON of blocks (for snapshots and size checks)."""
    return json.dumps(blocks, ensure_ascii=False, sort_keys=True)
