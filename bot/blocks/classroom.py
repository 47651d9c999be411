"""Block Kit for exercise labs and classes: the check report, the card's task list, the class overview."""

from __future__ import annotations

from datetime import datetime

from bot.blocks import format as fmt
from bot.blocks.kit import Block, Message, clip, context, escape, fallback, fit_blocks, section
from services.labs.classes import ClassView
from services.labs.pool import PoolStatus
from services.labs.views import ExerciseView, LabView

MAX_CLASS_ROWS = 40


def exercise_blocks(exercise: ExerciseView, *, hints: bool = False) -> list[Block]:
    """The exercise part of a card or report: progress, then each task in the course's order."""
    head = f"*Exercise: {exercise.done} of {exercise.total} steps done*"
    if exercise.completed_at is not None:
        head += f" :tada: complete ({fmt.slack_date(exercise.completed_at)})"
    elif exercise.solving:
        head += f" · labbot is doing `{escape(exercise.solving)}`"
    lines = []
    first = exercise.total - len(exercise.tasks) + 1
    for number, task in enumerate(exercise.tasks, start=first):
        mark = ":white_check_mark:" if task.done else ":white_circle:"
        line = f"{mark} {number}. {escape(task.title)} (`{task.step}`)"
        if hints and not task.done and exercise.checked_at is not None:
            line += f"\n      _{escape(clip(task.detail, 300))}_"
        lines.append(line)
    blocks = [section(clip(head + "\n" + "\n".join(lines), 2900))]
    if exercise.checked_at is not None:
        blocks.append(context(f"checked {fmt.slack_date(exercise.checked_at)} · `/lab check` again after each step"))
    return blocks


def build_check_report(lab: LabView) -> Message:
    """``/lab check NAME``: every task with done / not yet and its hint (shown to the person who asked)."""
    if lab.exercise is None:
        raise ValueError("a check report needs an exercise lab")
    blocks = [section(f"*Check of lab `{escape(lab.name)}`*"), *exercise_blocks(lab.exercise, hints=True)]
    nxt = lab.exercise.next_task
    if nxt is not None:
        blocks.append(context(f"Stuck? `/lab solve {lab.name} {nxt.step}` lets labbot do it (recorded in the audit)."))
    return Message(text=fallback(f"Lab {lab.name}: {lab.exercise.done} of {lab.exercise.total} steps done"),
                   blocks=fit_blocks(blocks))


def build_class_overview(cls: ClassView, *, now: datetime, text: str = "") -> Message:
    """The class at a glance: one line per lab with its student, state, progress, health and expiry."""
    head = (f"*Class `{escape(cls.name)}`* · {len(cls.live_labs)} live labs of {cls.size} · "
            f"trainer {fmt.user(cls.trainer)}")
    if cls.exercise_start:
        head += f" · exercise from `{cls.exercise_start}`"
    if cls.claimable:
        head += f"\n{cls.claimable} labs to claim: `/lab class claim {escape(cls.name)}`"
    if cls.destroyed_at is not None:
        head += f"\n_ended {fmt.slack_date(cls.destroyed_at)}_"
    lines = [_row(lab, now) for lab in cls.labs[:MAX_CLASS_ROWS]]
    if len(cls.labs) > MAX_CLASS_ROWS:
        lines.append(f"_… and {len(cls.labs) - MAX_CLASS_ROWS} more_")
    blocks = []
    if text:
        blocks.append(section(escape(clip(text, 2000))))
    blocks += [section(head), section(clip("\n".join(lines) or "_no labs_", 2900)),
               context(f"updated {fmt.slack_date(now)}")]
    return Message(text=fallback(text or f"class {cls.name}"), blocks=fit_blocks(blocks))


def build_confirm_class_destroy(cls: ClassView) -> Message:
    """``/lab class destroy CLASS`` without ``--yes``: say what would go, privately."""
    return Message(text=fallback(f"Destroy class {cls.name}?"), blocks=[section(
        f":warning: Destroy class `{escape(cls.name)}` and its {len(cls.live_labs)} live labs (every student's VMs, "
        f"disks and nested ZStack)? This cannot be undone. Repeat with `--yes`: "
        f"`/lab class destroy {escape(cls.name)} --yes`")])


def _row(lab: LabView, now: datetime) -> str:
    student = "_unclaimed_" if lab.claimable else fmt.user(lab.owner)
    bits = [f"{fmt.STATE_EMOJI.get(lab.state, '')} `{lab.name}`", student, fmt.STATE_WORD.get(lab.state, lab.state)]
    if lab.exercise is not None:
        done = " :tada:" if lab.exercise.completed_at is not None else ""
        bits.append(f"{lab.exercise.done}/{lab.exercise.total}{done}")
    if lab.state in ("ready", "expiring") and lab.health != "unknown":
        bits.append(f"health {lab.health}")
    if lab.state != "destroyed":
        bits.append(fmt.countdown(lab.expires_at, now))
    return " · ".join(bits)


def build_pool_status(text: str, pools: list[PoolStatus]) -> Message:
    """``/lab pool status`` (admins): per pooled profile its target and where its labs are."""
    lines = [f"`{escape(p.profile)}` · target {p.target} · *{p.ready} ready* · {p.building} building"
             + (f" · :x: {p.failed} failed" if p.failed else "") for p in pools]
    body = f"*{escape(text)}*" + ("\n" + "\n".join(lines) if lines else "")
    return Message(text=fallback(text), blocks=[section(clip(body, 2900))])
