"""The console front end: notices as lines (orphans and progress included) and scripts with their exit codes."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console

from bot.console.app import ConsoleFrontEnd
from bot.console.notifier import ConsoleNotifier
from config.settings import load_settings
from sandbox.zstack_sim.server import serve_simulator
from services import db
from services.labs.notifier import Notice, NoticeKind, OrphanReport
from services.labs.runtime import Runtime
from services.labs.service import Actor
from services.labs.tasks import TASK_STEPS, TaskResult
from services.labs.views import StepView
from tests.slack.factories import lab as factory_lab
from tests.slack.world import ScriptedJobs


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, color_system=None), out


async def test_orphans_are_listed_one_per_resource_without_a_fake_lab_headline() -> None:
    console, out = _console()
    now = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    details = {"VM labbot-old-vm1": "5f1c...; its lab `old` is destroyed; deleted",
               "volume labbot-x-data [1]": "9a2b...; no lab of that uuid; kept (deletion is off)"}
    await ConsoleNotifier(console).report_orphans(OrphanReport(text="2 resource(s) [no live lab] owns",
                                                               resources=details, channel=None, at=now))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[lab-platform] lab platform: 2 resource(s) [no live lab] owns")
    assert lines[1:] == [f"    {label}: {detail}" for label, detail in details.items()]
    assert "ready" not in out.getvalue()  # the stand-in lab's state is not shown as if it were a lab


async def test_progress_lines_are_throttled_per_step(tmp_path: Path) -> None:
    console, out = _console()
    lab = factory_lab(name="lab-platform")
    notifier = ConsoleNotifier(console, progress_interval=60)

    def progress(text: str) -> Notice:
        step = StepView(name="install_zstack", title="Install ZStack on VM2", state="running", attempt=1,
                        started_at=None, finished_at=None, duration_seconds=None, error=None, progress=text,
                        output_tail=None)
        return Notice(NoticeKind.STEP_PROGRESS, lab, step=step, text=text)

    for text in ("10% unpacking", "20% installing", "20% installing"):
        await notifier.notify(progress(text))
    assert out.getvalue().count("Install ZStack on VM2") == 1 and "10% unpacking" in out.getvalue()


async def test_a_script_stops_at_the_first_failing_command(tmp_path: Path) -> None:
    async with serve_simulator("outer") as sim:
        settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}", state_dir=tmp_path,
                                 platform_url=sim.url, platform_account="admin",
                                 platform_password=SecretStr("password"), default_profile="sandbox")
        await db.upgrade(settings.database_url)
        console, out = _console()
        runtime = Runtime(settings, notifiers=[ConsoleNotifier(console)])
        await runtime.start()
        try:
            front = ConsoleFrontEnd(runtime, console)
            assert await front.run_script(["/lab list --all"]) == 0
            assert await front.run_script(["/lab list", "/lab status nosuch", "/lab health nosuch"]) == 1
        finally:
            await runtime.stop()
    text = out.getvalue()
    assert "no labs" in text and "there is no lab called `nosuch`" in text
    assert "/lab status nosuch" in text and "/lab health nosuch" not in text  # it stopped at the failure


class _LaterJobs:
    """The engine's jobs, bound once the runtime (whose database and notifier they use) exists."""

    def __init__(self) -> None:
        self.target: ScriptedJobs | None = None

    async def build(self, lab_id: int, attention: asyncio.Event) -> None:
        assert self.target is not None
        await self.target.build(lab_id, attention)

    async def destroy(self, lab_id: int, attention: asyncio.Event) -> None:
        assert self.target is not None
        await self.target.destroy(lab_id, attention)


async def test_trainer_commands_in_the_console(tmp_path: Path) -> None:
    async with serve_simulator("outer") as sim:
        settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}", state_dir=tmp_path,
                                 platform_url=sim.url, platform_account="admin",
                                 platform_password=SecretStr("password"), default_profile="sandbox")
        await db.upgrade(settings.database_url)
        console, out = _console()
        jobs = _LaterJobs()
        runtime = Runtime(settings, notifiers=[ConsoleNotifier(console)], jobs=jobs)
        jobs.target = ScriptedJobs(runtime.sessions, runtime.notifier, progress_events=1, box=runtime.box)

        async def checker(lab_id: int) -> list[TaskResult]:  # the real checks run in tests/engine/test_exercise.py
            return [TaskResult(step, step == "iscsi_target", "ok" if step == "iscsi_target" else f"{step}: not yet")
                    for step in TASK_STEPS]

        runtime.service.exercise_checker = checker
        await runtime.start()
        try:
            front = ConsoleFrontEnd(runtime, console)
            assert await front.run_script([
                "/lab create ex --exercise", "/lab check ex", "/lab solve ex install_zstack",
                "/lab class create c3 --count 2 --for @U_STUDENT", "/lab class status c3", "/lab class claim c3",
                "/lab class extend c3 1h", "/lab class destroy c3 --yes",
            ]) == 0
            labs = {lab.name: lab for lab in await runtime.service.list_labs(Actor("x", is_admin=True),
                                                                             everything=True)}
        finally:
            await runtime.stop()
    text = out.getvalue()
    assert "Lab `ex`: 3 of 8 steps done" in text and "install_zstack: not yet" in text
    assert "labbot is doing `install_zstack` of lab `ex`" in text
    assert "class c3 — 2 live labs of 2, 1 to claim" in text
    assert "Lab `c3-02` of class `c3` is yours" in text
    assert "✓ 2 labs ready" in text and "✓ 2 labs destroyed" in text
    assert labs["c3-01"].owner == "U_STUDENT" and labs["c3-02"].owner == "console"
    assert {labs["c3-01"].state, labs["c3-02"].state} == {"destroyed"}


async def test_the_console_speaks_chinese_with_labbot_language_zh_cn(tmp_path: Path) -> None:
    from services import i18n

    async with serve_simulator("outer") as sim:
        settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}", state_dir=tmp_path,
                                 platform_url=sim.url, platform_account="admin",
                                 platform_password=SecretStr("password"), default_profile="sandbox",
                                 language="zh-CN")
        assert settings.language == "zh_CN"
        await db.upgrade(settings.database_url)
        console, out = _console()
        runtime = Runtime(settings, notifiers=[ConsoleNotifier(console)])  # makes zh_CN the process's language
        await runtime.start()
        i18n.forget_missing()
        try:
            front = ConsoleFrontEnd(runtime, console)
            assert await front.run_script(["/lab help", "/lab list --all"]) == 0
            assert await front.run_script(["/lab extend nosuch forever"]) == 1
            assert await front.run_script(["/lab status nosuch"]) == 1
        finally:
            await runtime.stop()
    text = out.getvalue()
    assert "构建一个新的实验环境" in text  # the help, in the course's words
    assert "没有实验环境" in text  # an empty list
    assert "`forever` 不是时长" in text and "用法" in text  # a refusal, with the usage
    assert "没有名为 `nosuch` 的实验环境" in text
    assert i18n.missing_translations() == []
