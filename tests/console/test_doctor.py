"""``labbot doctor``: passes on the sandbox profile against the platform ``make demo`` runs (the outer simulator
seeded from the profiles), and names every problem of a deliberately broken set-up, exiting non-zero."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr
from rich.console import Console

from bot.cli_doctor import doctor
from bot.console.app import ConsoleFrontEnd
from config.settings import load_settings
from sandbox.zstack_sim.server import serve_simulator
from services import db
from services.commands import parse_command
from services.dispatch import ReplyKind, execute
from services.errors import CommandError, PermissionDeniedError
from services.labs.runtime import Runtime
from services.labs.service import Actor
from tests.engine.test_preflight import broken_profile, platform  # noqa: F401 - the broken platform fixture
from tests.fakes.slack_api import FakeSlack

ROOT = Path(__file__).resolve().parents[2]
BOT_TOKEN = "xoxb-doctor-0000000000"
SECRET_KEY = "doctor-test-key-0123456789abcdef"


async def _migrated(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}"
    await db.upgrade(url)
    return url


async def test_doctor_passes_on_the_sandbox_profile_of_the_demo_platform(tmp_path: Path):
    async with serve_simulator("outer") as sim, FakeSlack(bot_token=BOT_TOKEN) as slack:
        settings = load_settings(database_url=await _migrated(tmp_path), state_dir=tmp_path, platform_url=sim.url,
                                 platform_password=SecretStr("password"), default_profile="sandbox",
                                 slack_bot_token=SecretStr(BOT_TOKEN), slack_signing_secret=SecretStr("s" * 32),
                                 secret_key=SecretStr(SECRET_KEY),
                                 slack_api_url=slack.api_url, channel="C0LABS")
        lines: list[str] = []
        assert await doctor(settings, None, lines.append), "\n".join(lines)
    assert lines[-1].endswith("checks, 0 problems")
    checks = {line.split()[1].rstrip(":") for line in lines[:-1]}
    assert {"profile", "platform", "vm1_image", "vm2_image", "vm1_offering", "vm2_offering", "l3:sandbox-public",
            "vxlan_pool", "capacity", "nested_virtualisation", "nested_image", "database", "quotas",
            "slack"} <= checks, lines
    assert all(line.startswith("ok ") for line in lines[:-1]), lines
    assert [c.method for c in slack.calls] == ["auth.test", "conversations.info"]
    assert sim.app.state.sim.state.executed("CreateVmInstance") == 0  # nothing was changed


async def test_doctor_names_every_problem_of_a_broken_setup(platform, tmp_path: Path):  # noqa: F811
    sim, _ = platform
    (tmp_path / "profiles").mkdir()
    broken = broken_profile(tmp_path / "profiles")
    data = yaml.safe_load((tmp_path / "profiles" / "sandbox.yaml").read_text())
    data["vm2"].pop("cpu_mode")
    data["install"].update(installer="sandbox/assets/no-such-installer.bin", upload=True)
    data["nested"]["image"]["file"] = "build/sandbox/no-such-image.qcow2"
    (tmp_path / "profiles" / "sandbox.yaml").write_text(yaml.safe_dump(data))
    assert broken.name == "sandbox"
    async with FakeSlack(bot_token=BOT_TOKEN) as slack:
        slack.conversation("C0GONE", archived=True)
        settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", state_dir=tmp_path,
                                 platform_url=sim.url, platform_password=SecretStr("password"),
                                 profiles_dir=tmp_path / "profiles", default_profile="sandbox",
                                 max_labs_per_user=30, max_labs_total=20,
                                 slack_bot_token=SecretStr(BOT_TOKEN), slack_signing_secret=SecretStr("s" * 32),
                                 secret_key=SecretStr(SECRET_KEY),
                                 slack_api_url=slack.api_url, channel="C0GONE")
        lines: list[str] = []
        assert not await doctor(settings, None, lines.append)
    problems = {line.split()[1].rstrip(":"): line for line in lines if line.startswith("PROBLEM")}
    assert set(problems) == {"vm1_image", "vm2_image", "vm1_offering", "vm2_offering", "l3:plain-net",
                             "l3:no-such-net", "vxlan_pool", "capacity", "nested_virtualisation", "installer",
                             "nested_image", "database", "quotas", "slack"}, lines
    assert "set `vm2.cpu_mode: host-passthrough`" in problems["nested_virtualisation"]
    assert "no-such-installer.bin does not exist" in problems["installer"]
    assert "no-such-image.qcow2 does not exist" in problems["nested_image"]
    assert "run `labbot db upgrade` first" in problems["database"]
    assert "LABBOT_MAX_LABS_PER_USER (30) is above LABBOT_MAX_LABS_TOTAL (20)" in problems["quotas"]
    assert "C0GONE is archived" in problems["slack"]
    assert lines[-1] == f"{len(lines) - 1} checks, {len(problems)} problems"


async def test_doctor_for_an_unknown_profile_says_which_exist(tmp_path: Path):
    async with serve_simulator("outer") as sim:
        settings = load_settings(database_url=await _migrated(tmp_path), state_dir=tmp_path, platform_url=sim.url,
                                 platform_password=SecretStr("password"))
        lines: list[str] = []
        assert not await doctor(settings, "nosuch", lines.append)
    assert lines[0].startswith("PROBLEM profile: there is no profile `nosuch`") and "sandbox, zcct" in lines[0]


def test_the_cli_exits_non_zero_when_the_platform_is_unreachable(tmp_path: Path):
    env = {**os.environ, "LABBOT_PLATFORM_URL": "http://127.0.0.1:9/zstack/v1", "LABBOT_PLATFORM_PASSWORD": "pw",
           "LABBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", "LABBOT_STATE_DIR": str(tmp_path),
           "LABBOT_DEFAULT_PROFILE": "sandbox", "LABBOT_PLATFORM_TIMEOUT_SECONDS": "2"}
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "bot.cli", "doctor"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("PROBLEM platform: cannot use the lab platform at http://127.0.0.1:9") for line in lines)
    assert any(line.startswith("PROBLEM platform_checks:") for line in lines), lines
    assert "pw" not in done.stdout.replace("pwd", "")  # the password never prints


@pytest.fixture(autouse=True)
def _no_env_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("LABBOT_", "SLACK_")):
            monkeypatch.delenv(name)


async def test_lab_doctor_is_for_admins_and_prints_the_same_checks(tmp_path: Path):
    async with serve_simulator("outer") as sim:
        settings = load_settings(database_url=await _migrated(tmp_path), state_dir=tmp_path, platform_url=sim.url,
                                 platform_password=SecretStr("password"), default_profile="zcct")
        runtime = Runtime(settings, notifiers=[])
        await runtime.start()
        try:
            admin = await execute(parse_command("/lab doctor --profile sandbox"), actor=Actor("U0ADMIN", is_admin=True),
                                  service=runtime.service)
            with pytest.raises(PermissionDeniedError, match="only an admin can run `/lab doctor`"):
                await execute(parse_command("doctor"), actor=Actor("U0USER"), service=runtime.service)
            # A console script (what `make demo` runs) stops at a doctor that found a problem.
            front = ConsoleFrontEnd(runtime, Console(file=io.StringIO(), width=200))
            assert await front.run_script(["/lab doctor --profile sandbox"]) == 0
            assert await front.run_script(["/lab doctor --profile nosuch", "/lab list"]) == 1
        finally:
            await runtime.stop()
    assert admin.kind == ReplyKind.DOCTOR and admin.private
    lines = admin.text.splitlines()
    assert lines[0] == "ok      profile: profile `sandbox` loaded from " + str(settings.profiles_dir)
    assert any(line.startswith("ok      platform: ZStack 5.2.1") for line in lines)
    assert lines[-1].endswith("0 problems"), lines
    with pytest.raises(CommandError, match="is not a profile name"):
        parse_command("/lab doctor --profile Bad!")
