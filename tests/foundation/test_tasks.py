"""Exercise tasks: what labbot seeds never includes a student's task or anything built on one."""

from __future__ import annotations

import pytest

from services.errors import CommandError
from services.labs.tasks import TASK_STEPS, seed_steps, student_steps

# The build's shape (services.labs.build.steps), plus a step a later change might add on top of a task.
AFTER = {
    "prepare": (), "create_vms": ("prepare",), "attach_volume": ("create_vms",), "wait_ssh": ("create_vms",),
    "iscsi_target": ("attach_volume", "wait_ssh"), "serve_image": ("wait_ssh",), "install_zstack": ("wait_ssh",),
    "nested_backup_storage": ("install_zstack",), "nested_compute": ("install_zstack",),
    "nested_storage": ("nested_compute", "iscsi_target"), "nested_network_image": ("nested_compute",),
    "nested_vm": ("nested_storage", "nested_network_image"), "first_health": ("nested_vm",),
}


def test_the_seed_stops_before_the_first_task_and_everything_built_on_it() -> None:
    assert seed_steps(AFTER, "iscsi_target") == ["prepare", "create_vms", "attach_volume", "wait_ssh", "serve_image"]
    later = seed_steps(AFTER, "nested_compute")
    assert {"iscsi_target", "install_zstack", "nested_backup_storage"} <= set(later)
    assert not set(later) & set(student_steps("nested_compute")) and "first_health" not in later


def test_only_tasks_are_starting_points() -> None:
    assert student_steps("nested_vm") == ("nested_vm",) and student_steps(TASK_STEPS[0]) == TASK_STEPS
    with pytest.raises(CommandError, match="not a step a student can do by hand"):
        student_steps("create_vms")
