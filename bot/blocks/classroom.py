"""Block Kit for exercise labs and classes: the check report, the card's task list, the class overview."""

from __future__ import annotations

from datetime import datetime

from bot.blocks import format as fmt
from bot.blocks.kit import Block, Message, clip, context, escape, fallback, fit_blocks, section
from services.i18n import _
from services.labs.classes import ClassView
from services.labs.pool import PoolStatus
from services.labs.views import ExerciseView, LabView

MAX_CLASS_ROWS = 40


def exercise_blocks(exercise: ExerciseView, *, hints: bool = False) -> list[Block]:
    """The exercise part of a card or report: progress, then each task in the course's order."""
    head = _("*Exercise: {done} of {total} steps done*").format(done=exercise.done, total=exercise.total)
    if exercise.completed_at is not None:
        head += _(" :tada: complete ({slack_date})").format(slack_date=fmt.slack_date(exercise.completed_at))
    elif exercise.solving:
        head += _(" · labbot is doing `{escape}`").format(escape=escape(exercise.solving))
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
        blocks.append(
            context(
                _("checked {slack_date} · `/lab check` again after each step").format(
                    slack_date=fmt.slack_date(exercise.checked_at)
                )
            )
        )
    return blocks


def build_check_report(lab: LabView) -> Message:
    """``/lab check NAME``: every task with done / not yet and its hint (shown to the person who asked)."""
    if lab.exercise is None:
        raise ValueError("a check report needs an exercise lab")
    blocks = [
        section(_("*Check of lab `{escape}`*").format(escape=escape(lab.name))),
        *exercise_blocks(lab.exercise, hints=True),
    ]
    nxt = lab.exercise.next_task
    if nxt is not None:
        blocks.append(
            context(
                _("Stuck? `/lab solve {name} {step}` lets labbot do it (recorded in the audit).").format(
                    name=lab.name, step=nxt.step
                )
            )
        )
    return Message(
        text=fallback(
            _("Lab {name}: {done} of {total} steps done").format(
                name=lab.name, done=lab.exercise.done, total=lab.exercise.total
            )
        ),
        blocks=fit_blocks(blocks),
    )


def build_class_overview(cls: ClassView, *, now: datetime, text: str = "") -> Message:
    """The class at a glance: one line per lab with its student, state, progress, health and expiry."""
    head = _("*Class `{escape}`* · {len} live labs of {size} · trainer {user}").format(
        escape=escape(cls.name), len=len(cls.live_labs), size=cls.size, user=fmt.user(cls.trainer)
    )
    if cls.exercise_start:
        head += _(" · exercise from `{exercise_start}`").format(exercise_start=cls.exercise_start)
    if cls.claimable:
        head += _("\n{claimable} labs to claim: `/lab class claim {escape}`").format(
            claimable=cls.claimable, escape=escape(cls.name)
        )
    if cls.destroyed_at is not None:
        head += _("\n_ended {slack_date}_").format(slack_date=fmt.slack_date(cls.destroyed_at))
    lines = [_row(lab, now) for lab in cls.labs[:MAX_CLASS_ROWS]]
    if len(cls.labs) > MAX_CLASS_ROWS:
        lines.append(_("_… and {value} more_").format(value=len(cls.labs) - MAX_CLASS_ROWS))
    blocks = []
    if text:
        blocks.append(section(escape(clip(text, 2000))))
    blocks += [
        section(head),
        section(clip("\n".join(lines) or _("_no labs_"), 2900)),
        context(_("updated {slack_date}").format(slack_date=fmt.slack_date(now))),
    ]
    return Message(text=fallback(text or _("class {name}").format(name=cls.name)), blocks=fit_blocks(blocks))


def build_confirm_class_destroy(cls: ClassView) -> Message:
    """``/lab class destroy CLASS`` without ``--yes``: say what would go, privately."""
    return Message(
        text=fallback(_("Destroy class {name}?").format(name=cls.name)),
        blocks=[
            section(
                _(
                    ":warning: Destroy class `{escape}` and its {len} live labs (every student's VMs, disks and nested "
                    "ZStack)? This cannot be undone. Repeat with `--yes`: `/lab class destroy {escape} --yes`"
                ).format(escape=escape(cls.name), len=len(cls.live_labs))
            )
        ],
    )


def _row(lab: LabView, now: datetime) -> str:
    student = "_unclaimed_" if lab.claimable else fmt.user(lab.owner)
    bits = [f"{fmt.STATE_EMOJI.get(lab.state, '')} `{lab.name}`", student, fmt.STATE_WORD.get(lab.state, lab.state)]
    if lab.exercise is not None:
        done = " :tada:" if lab.exercise.completed_at is not None else ""
        bits.append(f"{lab.exercise.done}/{lab.exercise.total}{done}")
    if lab.state in ("ready", "expiring") and lab.health != "unknown":
        bits.append(_("health {health}").format(health=lab.health))
    if lab.state != "destroyed":
        bits.append(fmt.countdown(lab.expires_at, now))
    return " · ".join(bits)


def build_pool_status(text: str, pools: list[PoolStatus]) -> Message:
    """``/lab pool status`` (admins): per pooled profile its target and where its labs are."""
    lines = [
        _("`{escape}` · target {target} · *{ready} ready* · {building} building").format(
            escape=escape(p.profile), target=p.target, ready=p.ready, building=p.building
        )
        + (_(" · :x: {failed} failed").format(failed=p.failed) if p.failed else "")
        for p in pools
    ]
    body = f"*{escape(text)}*" + ("\n" + "\n".join(lines) if lines else "")
    return Message(text=fallback(text), blocks=[section(clip(body, 2900))])
