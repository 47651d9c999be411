"""The console front end: notices as lines (orphans and progress included) and scripts with their exit codes."""

from __future__ import annotations

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
from services.labs.notifier import Notice, NoticeKind
from services.labs.runtime import Runtime
from services.labs.views import StepView
from services.scheduler.orphans import platform_view


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, color_system=None), out


async def test_orphans_are_listed_one_per_resource_without_a_fake_lab_headline() -> None:
    console, out = _console()
    settings = load_settings(database_url="sqlite+aiosqlite:///unused.db")
    now = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    details = {"VM labbot-old-vm1": "5f1c...; its lab `old` is destroyed; deleted",
               "volume labbot-x-data [1]": "9a2b...; no lab of that uuid; kept (deletion is off)"}
    await ConsoleNotifier(console).notify(Notice(NoticeKind.ORPHANS_FOUND, platform_view(settings, now),
                                                 actor="labbot", text="2 resource(s) [no live lab] owns",
                                                 details=details))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[lab-platform] lab platform: 2 resource(s) [no live lab] owns")
    assert lines[1:] == [f"    {label}: {detail}" for label, detail in details.items()]
    assert "ready" not in out.getvalue()  # the stand-in lab's state is not shown as if it were a lab


async def test_progress_lines_are_throttled_per_step(tmp_path: Path) -> None:
    console, out = _console()
    settings = load_settings(database_url="sqlite+aiosqlite:///unused.db")
    lab = platform_view(settings, datetime(2026, 11, 26, tzinfo=UTC))
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
