"""What goes in a lab card's thread: the build report, step failures with their output tail, the audit trail.

The card stays short and current; the thread keeps the detail and the history, in order.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.blocks import format as fmt
from bot.blocks.card import summary_lines
from bot.blocks.kit import Message, clip, code_block, context, escape, fallback, fit_blocks, section
from services.i18n import _
from services.labs.views import LabView, StepView

log = logging.getLogger(__name__)

OUTPUT_TAIL_CHARS = 2500


def build_build_report(lab: LabView) -> Message:
    """Posted when a build ends (ready or failed): every step that ran, with its duration and attempts."""
    ran = [s for s in lab.steps if s.state != "pending"]
    total = _wall_time(ran)
    lines = []
    for step in ran:
        bits = [fmt.STEP_EMOJI.get(step.state, ""), f"*{escape(clip(step.title, 80))}*"]
        if step.duration_seconds is not None:
            bits.append(fmt.duration(step.duration_seconds))
        if step.attempt > 1:
            bits.append(_("({attempts} attempts)").format(attempts=step.attempt))
        if step.state == "done" and step.progress:
            bits.append("— " + escape(clip(step.progress, 120)))
        lines.append(" ".join(bits))
    outcome = (
        _("built")
        if lab.state in ("ready", "expiring")
        else _("stopped ({get})").format(get=fmt.STATE_WORD.get(lab.state, lab.state))
    )
    head = _("*Build report*: lab `{name}` {outcome}").format(name=lab.name, outcome=outcome) + (
        _(" in {duration}").format(duration=fmt.duration(total)) if total else ""
    )
    blocks = [section(head + "\n" + "\n".join(lines[:40]) if lines else head + _("\n_No step ran._"))]
    if lab.state in ("ready", "expiring") and (facts := summary_lines(lab)):
        blocks.append(section(_("*What it is made of*\n") + "\n".join(f"• {line}" for line in facts)))
    return Message(text=fallback(_("Build report for lab {name}").format(name=lab.name)), blocks=fit_blocks(blocks))


def build_step_failure(lab: LabView, step: StepView) -> Message:
    """A failed step: what it said, and the tail of its output (secrets were scrubbed by the engine)."""
    attempt = _(" (attempt {attempt})").format(attempt=step.attempt) if step.attempt > 1 else ""
    error = escape(clip(step.error or _("no error recorded"), 1500))
    blocks = [
        section(
            _(":red_circle: *{escape}* failed{attempt}: {error}").format(
                escape=escape(clip(step.title, 80)), attempt=attempt, error=error
            )
        )
    ]
    if step.output_tail and step.output_tail.strip():
        blocks.append(section(_("*Output (last lines)*\n") + code_block(step.output_tail, OUTPUT_TAIL_CHARS)))
    blocks.append(
        context(
            _("`/lab logs {name} {name2}` shows it again · *Retry* resumes from this step").format(
                name=lab.name, name2=step.name
            )
        )
    )
    return Message(
        text=fallback(_("Lab {name}: step {title} failed").format(name=lab.name, title=step.title)),
        blocks=fit_blocks(blocks),
    )


def build_lab_error(lab: LabView) -> Message:
    """A failure that is not tied to one step (e.g. the platform refused the lab)."""
    error = escape(clip(lab.error or _("no error recorded"), 2500))
    return Message(
        text=fallback(_("Lab {name} failed").format(name=lab.name)),
        blocks=[section(_(":x: *Lab `{name}` failed*: {error}").format(name=lab.name, error=error))],
    )


def build_audit_note(lab: LabView, *, actor: str, what: str, at: datetime) -> Message:
    """One line of the audit trail: who did what, and when."""
    text = f"{fmt.user(actor)} {fmt.dates_to_tokens(escape(clip(what, 500)))} · {fmt.slack_date(at)}"
    return Message(text=fallback(_("Lab {name}: {what}").format(name=lab.name, what=what)), blocks=[context(text)])


def _wall_time(steps: list[StepView]) -> float | None:
    starts = [s.started_at for s in steps if s.started_at]
    ends = [s.finished_at for s in steps if s.finished_at]
    if not starts or not ends:
        return None
    return (max(ends) - min(starts)).total_seconds()
