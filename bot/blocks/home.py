"""The App Home tab: "My labs" with state, TTL countdown and quick actions; for admins every lab and the
next cleanups.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.blocks import format as fmt
from bot.blocks.card import card_actions
from bot.blocks.ids import LabAction
from bot.blocks.kit import (
    MAX_VIEW_BLOCKS,
    Block,
    actions,
    button,
    context,
    divider,
    escape,
    fit_blocks,
    header,
    section,
)
from services.i18n import _
from services.labs.pool import PoolStatus
from services.labs.views import LabView

log = logging.getLogger(__name__)

MAX_OWN_LABS = 20
MAX_ADMIN_LINES = 40
NEXT_CLEANUPS = 10
# Home views may be far larger than messages (250 kB); this keeps the tab readable.
MAX_HOME_CHARS = 60_000


def build_home(
    *,
    user_id: str,
    my_labs: Sequence[LabView],
    all_labs: Sequence[LabView] | None,
    now: datetime,
    pools: Sequence[PoolStatus] = (),
) -> dict[str, Any]:
    """The home view for ``user_id``; ``all_labs`` (every live lab) is given only for admins."""
    blocks: list[Block] = [
        header("labbot"),
        section(
            _("Hi {user}. Build a ZStack training lab, then reach it, extend it or tear it down here.").format(
                user=fmt.user(user_id)
            )
        ),
        actions([button(_("New lab"), LabAction.OPEN_CREATE, "home", style="primary")]),
        divider(),
        header(_("My labs")),
    ]
    own = [lab for lab in my_labs if lab.state != "destroyed"]
    if not own:
        blocks.append(section(_("_You have no live labs._")))
    for lab in own[:MAX_OWN_LABS]:
        blocks.extend(_lab_entry(lab, now))
    if all_labs is not None:
        blocks.extend(_admin_section(all_labs, now))
        if pools:
            lines = [
                _("`{escape}` · target {target} · *{ready} ready* · {building} building").format(
                    escape=escape(p.profile), target=p.target, ready=p.ready, building=p.building
                )
                + (_(" · :x: {failed} failed").format(failed=p.failed) if p.failed else "")
                for p in pools
            ]
            blocks.append(section(_("*Warm pools*\n") + "\n".join(lines)))
    blocks.append(
        context(_("updated {slack_date} · `/lab help` lists every command").format(slack_date=fmt.slack_date(now)))
    )
    return {
        "type": "home",
        "blocks": fit_blocks(blocks, max_blocks=MAX_VIEW_BLOCKS, max_chars=MAX_HOME_CHARS, keep_last=1),
    }


def _lab_entry(lab: LabView, now: datetime) -> list[Block]:
    step = lab.current_step
    doing = f" · {escape(step.title)}" + (f" ({escape(step.progress)})" if step.progress else "") if step else ""
    text = (
        f"{fmt.STATE_EMOJI.get(lab.state, '')} *{escape(lab.name)}* · {fmt.STATE_WORD.get(lab.state, lab.state)}"
        f"{doing}\n`{escape(lab.profile)}` · {fmt.countdown(lab.expires_at, now)}"
    )
    if lab.state == "failed" and lab.error:
        text += f"\n:x: {escape(lab.error[:200])}"
    entry = [section(text)]
    elements = card_actions(lab)
    if elements:
        entry.append(actions(elements))
    return entry


def _admin_section(labs: Sequence[LabView], now: datetime) -> list[Block]:
    live = [lab for lab in labs if lab.state != "destroyed"]
    blocks: list[Block] = [divider(), header(_("Every lab ({len} live)").format(len=len(live)))]
    lines = [
        f"{fmt.STATE_EMOJI.get(lab.state, '')} `{lab.name}` · {fmt.user(lab.owner)} · "
        f"{fmt.STATE_WORD.get(lab.state, lab.state)} · `{escape(lab.profile)}`"
        for lab in live[:MAX_ADMIN_LINES]
    ]
    if len(live) > MAX_ADMIN_LINES:
        lines.append(_("_… and {value} more (`/lab list --all`)_").format(value=len(live) - MAX_ADMIN_LINES))
    blocks.append(section("\n".join(lines) if lines else _("_No live labs._")))
    upcoming = sorted(
        (lab for lab in live if lab.state in ("ready", "expiring", "failed")), key=lambda lab: lab.expires_at
    )[:NEXT_CLEANUPS]
    blocks.append(header(_("Next cleanups")))
    if upcoming:
        blocks.append(
            section(
                "\n".join(
                    f"`{lab.name}` of {fmt.user(lab.owner)}: {fmt.countdown(lab.expires_at, now)}" for lab in upcoming
                )
            )
        )
    else:
        blocks.append(section(_("_Nothing is due._")))
    return blocks
