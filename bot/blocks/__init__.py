"""Pure Block Kit builders: domain values in, Slack messages and views out (no I/O, no Slack client).

Every builder keeps its output within Slack's limits (blocks per message or view, text lengths), whatever the
lab looks like, so a long name or a huge output tail can never make Slack refuse a message.
"""

from bot.blocks.card import CardNote, build_lab_card, card_actions
from bot.blocks.details import build_access, build_health
from bot.blocks.home import build_home
from bot.blocks.kit import Message
from bot.blocks.modal import CreateForm, build_create_modal, parse_create_form
from bot.blocks.notices import build_expired, build_expiry_warning, build_health_changed, build_orphans_found
from bot.blocks.replies import build_error, build_help, build_notice, build_reply
from bot.blocks.thread import build_audit_note, build_build_report, build_lab_error, build_step_failure

__all__ = [
    "CardNote",
    "CreateForm",
    "Message",
    "build_access",
    "build_audit_note",
    "build_build_report",
    "build_create_modal",
    "build_error",
    "build_expired",
    "build_expiry_warning",
    "build_health",
    "build_health_changed",
    "build_help",
    "build_home",
    "build_lab_card",
    "build_lab_error",
    "build_notice",
    "build_orphans_found",
    "build_reply",
    "build_step_failure",
    "card_actions",
    "parse_create_form",
]
