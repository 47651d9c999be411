"""The tasks of an exercise lab: which build steps a student does by hand, in the course's order and words.

Pure data and small rules (no I/O), shared by the build (what labbot seeds), the checks and the views.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.errors import CommandError
from services.i18n import N_, Texts, _

# The build steps a student can do by hand, in the course's order. The steps before them (keys, the VMs,
# the data disk, SSH) need the lab platform's account, which students do not have: labbot always does those.
TASK_STEPS: tuple[str, ...] = (
    "iscsi_target",
    "install_zstack",
    "nested_compute",
    "nested_storage",
    "nested_network_image",
    "nested_vm",
)
# The course's own words for each task, as the card lists them.
TASK_TITLES = Texts({
    "iscsi_target": N_("On VM1, export the 50 GB data disk as an iSCSI target on port 3260 (targetcli), "
                       "admitting VM2's initiator"),
    "install_zstack": N_("On VM2 (through VM1), install ZStack and wait for its API on port 8080"),
    "nested_compute": N_("In ZStack, create a zone and a KVM cluster, and add VM2 as a KVM host"),
    "nested_storage": N_("Add the iSCSI server VM1:3260, find the LUN, and build SharedBlock primary storage on it"),
    "nested_network_image": N_("Add backup storage, a flat network with an IP range, the image and an "
                               "instance offering"),
    "nested_vm": N_("Create a VM whose root volume is on the SharedBlock storage, and start it"),
})
DEFAULT_START = "iscsi_target"
# The course counts the two steps labbot always seeds (create the VMs, attach the disk) as its first two.
SEEDED_COURSE_STEPS = 2


@dataclass(frozen=True)
class TaskResult:
    """One task's verdict: done, or not yet with a hint; ``facts`` are what the check found."""

    step: str
    done: bool
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        """What the lab keeps of this verdict (JSON)."""
        return {"done": self.done, "detail": self.detail[:300]}


def validate_start(step: str) -> str:
    """``step`` if a student can start an exercise there, else CommandError listing where they can."""
    if step not in TASK_STEPS:
        raise CommandError(_("`{value}` is not a step a student can do by hand; use one of: ").format(value=step[:40])
                           + ", ".join(TASK_STEPS))
    return step


def student_steps(start: str) -> tuple[str, ...]:
    """The tasks of an exercise that starts at ``start``."""
    return TASK_STEPS[TASK_STEPS.index(validate_start(start)):]


def seed_steps(after: Mapping[str, Sequence[str]], start: str) -> list[str]:
    """The build steps labbot runs before handing an exercise lab out: every step that is not a student's task
    and does not build on one (``after``: each step's dependencies), so the seed never does the student's work."""
    tasks = set(student_steps(start))
    blocked: dict[str, bool] = {}

    def builds_on_task(step: str) -> bool:
        if step not in blocked:
            blocked[step] = step in tasks or any(builds_on_task(dep) for dep in after.get(step, ()))
        return blocked[step]

    return [step for step in after if not builds_on_task(step)]
