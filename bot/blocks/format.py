"""Words and marks for lab states, steps and times, as Slack shows them (pure functions, no I/O)."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

from bot.blocks.kit import clip, escape
from services.i18n import N_, Texts, _, ngettext
from services.labs.views import LabView, StepView

log = logging.getLogger(__name__)

STATE_EMOJI = {
    "requested": ":hourglass_flowing_sand:",
    "provisioning": ":building_construction:",
    "ready": ":white_check_mark:",
    "expiring": ":alarm_clock:",
    "destroying": ":broom:",
    "destroyed": ":wastebasket:",
    "failed": ":x:",
}
STATE_WORD = Texts({
    "requested": N_("Requested"),
    "provisioning": N_("Building"),
    "ready": N_("Ready"),
    "expiring": N_("Expiring soon"),
    "destroying": N_("Destroying"),
    "destroyed": N_("Destroyed"),
    "failed": N_("Failed"),
})
STEP_EMOJI = {
    "pending": ":white_circle:",
    "running": ":arrows_counterclockwise:",
    "done": ":large_green_circle:",
    "failed": ":red_circle:",
}
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
BAR_WIDTH = 20


def state_label(state: str) -> str:
    """``:white_check_mark: Ready``."""
    return f"{STATE_EMOJI.get(state, ':grey_question:')} {STATE_WORD.get(state, state)}"


def duration(seconds: float | None) -> str:
    """``42s``, ``3m 05s``, ``1h 02m``, ``2d 03h``."""
    if seconds is None:
        return ""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h {total % 3600 // 60:02d}m"
    return f"{total // 86400}d {total % 86400 // 3600:02d}h"


def short_duration(delta: timedelta) -> str:
    """``90m`` → ``1h 30m``; for option labels and confirmations."""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return " ".join(p for p in parts if p) or "0m"


def slack_date(when: datetime, pattern: str | None = None) -> str:
    """A Slack date token: shown in each reader's own time zone ("today at 15:50"), with a UTC fallback for
    clients that cannot render it (docs.slack.dev/messaging/formatting-message-text, Date formatting)."""
    pattern = pattern or _("{date_short_pretty} at {time}")  # Slack fills in these tokens, not str.format
    return f"<!date^{int(when.timestamp())}^{pattern}|{when:%Y-%m-%d %H:%M} UTC>"


def countdown(expires_at: datetime, now: datetime) -> str:
    """``until <date>`` or ``expired <date>``.

    An absolute time, rendered by Slack in each reader's zone: a card is re-rendered only when its lab changes,
    so a relative figure ("3h 59m left") would stay on it, wrong, for hours.
    """
    when = slack_date(expires_at)
    return (_("until {when}") if expires_at > now else _("expired {when}")).format(when=when)


_UTC_TIME = re.compile(r"\b(\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC\b")


def dates_to_tokens(text: str) -> str:
    """Every ``YYYY-MM-DD HH:MM UTC`` the domain wrote into ``text`` as a Slack date token (apply after escaping)."""
    return _UTC_TIME.sub(lambda m: slack_date(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M").replace(
        tzinfo=UTC)), text)


def times(count: int) -> str:
    """``once``, ``twice``, ``3 times``."""
    if count == 1:
        return _("once")
    if count == 2:
        return _("twice")
    return ngettext("{n} time", "{n} times", count).format(n=count)


# What each health check (services.labs.build.health) looks at, in the words of someone running a course.
CHECK_LABELS = Texts({
    "outer_vms": N_("VM1 and VM2 running on the lab platform"),
    "ssh_vm1": N_("SSH to VM1"),
    "ssh_vm2": N_("SSH to VM2 through VM1"),
    "iscsi_portal": N_("VM1's iSCSI portal reachable from VM2"),
    "iscsi_lun": N_("VM1's disk visible on VM2 over iSCSI"),
    "nested_api": N_("nested ZStack API answering"),
    "kvm_host": N_("VM2 connected as the nested KVM host"),
    "shared_block": N_("SharedBlock storage connected, with free space"),
    "nested_vm": N_("nested VM running"),
})


def check_label(name: str) -> str:
    """A health check as people read it (an unknown check keeps its id)."""
    return CHECK_LABELS.get(name, name.replace("_", " "))


def percent(progress: str | None) -> float | None:
    """The last percentage in a progress text (``installing: 45%`` → 45.0), if any."""
    if not progress:
        return None
    found = _PERCENT.findall(progress)
    if not found:
        return None
    return max(0.0, min(100.0, float(found[-1])))


def progress_bar(value: float) -> str:
    """``▓▓▓▓▓▓▓▓▓░░░░░░░░░░░ 45%``."""
    filled = round(value / 100 * BAR_WIDTH)
    return "▓" * filled + "░" * (BAR_WIDTH - filled) + f" {value:.0f}%"


def step_line(step: StepView) -> str:
    """One mrkdwn line per step: mark, title, duration, and the progress or error of this attempt."""
    parts = [STEP_EMOJI.get(step.state, ":grey_question:"), escape(clip(step.title, 80))]
    if step.state != "pending" and step.duration_seconds is not None:
        parts.append(f"`{duration(step.duration_seconds)}`")
    if step.attempt > 1:
        parts.append(_("_(attempt {attempt})_").format(attempt=step.attempt))
    if step.state == "running" and step.progress:
        parts.append("— " + escape(clip(step.progress, 120)))
    if step.state == "failed" and step.error:
        parts.append("— " + escape(clip(step.error.splitlines()[0] if step.error.strip() else step.error, 200)))
    return " ".join(parts)


def user(user_id: str) -> str:
    """A mention of a Slack user; labbot's own actions are named as such."""
    if user_id == "labbot":
        return "labbot"
    return f"<@{user_id}>"


def lab_title(lab: LabView) -> str:
    """``:white_check_mark: Lab demo — Ready`` (plain text, for headers and fallbacks)."""
    return _("{emoji} Lab {name} — {state}").format(
        emoji=STATE_EMOJI.get(lab.state, ""), name=lab.name, state=state_word(lab.state)
    )


def state_word(state: str) -> str:
    """A lab state as people read it, in the current language (an unknown state keeps its id)."""
    return STATE_WORD.get(state, state)
