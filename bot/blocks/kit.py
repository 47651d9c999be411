"""Small Block Kit constructors and the limits every builder stays within.

Each block and element is made with ``slack_sdk.models.blocks`` (which knows Block Kit's shapes and checks
them when the JSON is made); what the SDK does not do stays here: text is clipped to Slack's per-field limits
before the SDK sees it (the SDK refuses an over-long text instead of cutting it), and ``fit_blocks`` keeps a
whole message under the block count and aggregate size Slack accepts (``invalid_blocks`` /
``msg_blocks_too_long``). Builders get plain dicts back, as the Web API and ``respond`` take them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)

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


def _mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> MarkdownTextObject:
    return MarkdownTextObject(text=clip(text, limit) or " ")


def _plain(text: str, limit: int = MAX_SECTION_TEXT) -> PlainTextObject:
    return PlainTextObject(text=clip(text, limit) or " ", emoji=True)


def mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    """A mrkdwn text object."""
    return _mrkdwn(text, limit).to_dict()


def plain(text: str, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    """A plain_text text object (emoji shortcodes allowed)."""
    return _plain(text, limit).to_dict()


def header(text: str, block_id: str | None = None) -> Block:
    """A header block."""
    return HeaderBlock(text=_plain(text, MAX_HEADER_TEXT), block_id=block_id).to_dict()


def section(text: str, *, block_id: str | None = None, fields: list[str] | None = None) -> Block:
    """A mrkdwn section, optionally with up to ten two-column fields."""
    parts = [_mrkdwn(f, MAX_FIELD_TEXT) for f in fields[:MAX_FIELDS]] if fields else None
    return SectionBlock(text=_mrkdwn(text), fields=parts, block_id=block_id).to_dict()


def fields_section(fields: list[str], *, block_id: str | None = None) -> Block:
    """A section made only of two-column fields."""
    return SectionBlock(fields=[_mrkdwn(f, MAX_FIELD_TEXT) for f in fields[:MAX_FIELDS]], block_id=block_id).to_dict()


def context(*texts: str, block_id: str | None = None) -> Block:
    """A context block of mrkdwn snippets (small grey text)."""
    return ContextBlock(elements=[_mrkdwn(t) for t in texts[:MAX_CONTEXT_ELEMENTS]], block_id=block_id).to_dict()


def divider() -> Block:
    """A divider block."""
    return DividerBlock().to_dict()


def confirm(title: str, text: str, yes: str, no: str | None = None, *, danger: bool = True) -> dict[str, Any]:
    """A confirmation dialog object, clipped to Slack's limits."""
    return ConfirmObject(
        title=_plain(title, MAX_CONFIRM_TITLE),
        text=_mrkdwn(text, MAX_CONFIRM_TEXT),
        confirm=_plain(yes, MAX_CONFIRM_BUTTON),
        deny=_plain(no or _("Cancel"), MAX_CONFIRM_BUTTON),
        style="danger" if danger else None,
    ).to_dict()


def button(
    text: str,
    action_id: str,
    value: str,
    *,
    style: str | None = None,
    confirm_dialog: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A button element; ``style`` is ``primary`` or ``danger``."""
    element = ButtonElement(text=_plain(text, MAX_BUTTON_TEXT), action_id=action_id, value=value, style=style)
    as_dict = element.to_dict()
    if confirm_dialog:
        as_dict["confirm"] = confirm_dialog
    return as_dict


def option(text: str, value: str) -> dict[str, Any]:
    """One option of a select menu."""
    if len(value) > MAX_OPTION_VALUE:
        raise ValueError(f"option value longer than {MAX_OPTION_VALUE} characters")
    return Option(text=_plain(text, MAX_OPTION_TEXT), value=value).to_dict()


def static_select(placeholder: str, action_id: str, options: list[dict[str, Any]]) -> dict[str, Any]:
    """A static select menu."""
    return StaticSelectElement(placeholder=_plain(placeholder, 150), action_id=action_id,
                               options=options[:100]).to_dict()


def actions(elements: list[dict[str, Any]], *, block_id: str | None = None) -> Block:
    """An actions block (at most 25 elements)."""
    return ActionsBlock(elements=elements[:MAX_ACTION_ELEMENTS], block_id=block_id).to_dict()


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
