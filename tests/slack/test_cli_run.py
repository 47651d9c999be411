"""`labbot run` refuses to start without usable Slack settings, naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(env: dict[str, str], tmp_path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LABBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db"}
    command = [sys.executable, "-m", "bot.cli", "run", "--port", "39999"]
    return subprocess.run(command, env={**base, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "not-a-token"}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-1234567890-abcdef", "LABBOT_SECRET_KEY": "k" * 40}, "SLACK_SIGNING_SECRET"),
        ({"SLACK_BOT_TOKEN": "xoxb-1234567890-abcdef", "SLACK_APP_TOKEN": "xoxb-wrong-kind-123",
          "LABBOT_SECRET_KEY": "k" * 40}, "SLACK_APP_TOKEN"),
    ],
)
def test_bad_slack_settings_stop_start_up(env: dict[str, str], named: str, tmp_path) -> None:
    result = run(env, tmp_path)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    for value in env.values():
        if value.startswith("xox"):
            assert value not in result.stderr  # a malformed token is named, never echoed
