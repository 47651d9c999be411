"""Plain words for exercise labs and classes, shared by the console and Slack renderers (pure functions)."""

from __future__ import annotations

from datetime import datetime

from bot.blocks.format import state_word
from services.i18n import _
from services.labs.classes import ClassView
from services.labs.pool import PoolStatus
from services.labs.views import ExerciseView, LabView

TASK_MARK = {True: "✓", False: "·"}


def progress_line(exercise: ExerciseView) -> str:
    """``exercise: 4 of 8 steps done`` (with the completion, once every task passed)."""
    line = _("exercise: {done} of {total} steps done").format(done=exercise.done, total=exercise.total)
    if exercise.completed_at is not None:
        line += _(" — complete")
    if exercise.solving:
        line += _(" — labbot is doing {solving}").format(solving=exercise.solving)
    return line


def task_lines(exercise: ExerciseView, *, hints: bool = True) -> list[str]:
    """One line per task: mark, the course's words, and the check's hint where it is not done yet."""
    lines = []
    for number, task in enumerate(exercise.tasks, start=exercise.total - len(exercise.tasks) + 1):
        line = f"{TASK_MARK[task.done]} {number}. {task.title} [{task.step}]"
        if hints and exercise.checked_at is not None:
            hint = _("done: {detail}") if task.done else _("not yet: {detail}")
            line += "\n      " + hint.format(detail=task.detail)
        lines.append(line)
    return lines


def class_row(lab: LabView, now: datetime) -> tuple[str, str, str, str, str, str]:
    """A class overview row: lab, student, state, progress, health, time left."""
    student = _("(unclaimed)") if lab.claimable else lab.owner
    progress = f"{lab.exercise.done}/{lab.exercise.total}" if lab.exercise is not None else "-"
    if lab.exercise is not None and lab.exercise.completed_at is not None:
        progress += " ✓"
    left = "" if lab.state == "destroyed" else _left(lab.expires_at, now)
    return lab.name, student, state_word(lab.state), progress, lab.health, left


def class_headline(cls: ClassView) -> str:
    """``class c1 — 12 labs (3 to claim), exercise from iscsi_target, trainer U1``."""
    bits = [_("class {name} — {len} live labs of {size}").format(name=cls.name, len=len(cls.live_labs), size=cls.size)]
    if cls.claimable:
        bits.append(
            _("{claimable} to claim (`/lab class claim {name}`)").format(claimable=cls.claimable, name=cls.name)
        )
    if cls.exercise_start:
        bits.append(_("exercise from {exercise_start}").format(exercise_start=cls.exercise_start))
    bits.append(_("profile {profile}").format(profile=cls.profile))
    if cls.destroyed_at is not None:
        bits.append(_("ended"))
    return ", ".join(bits)


def _left(expires_at: datetime, now: datetime) -> str:
    minutes = int((expires_at - now).total_seconds() // 60)
    if minutes < 0:
        return _("expired")
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def pool_rows(pools: list[PoolStatus]) -> list[tuple[str, str, str, str, str]]:
    """One row per pooled profile: profile, target, ready, building, failed."""
    return [(p.profile, str(p.target), str(p.ready), str(p.building), str(p.failed)) for p in pools]
