"""``labbot sim zstack`` as a real process, hook loading, bind-address rules and the synthetic iSCSI LUN."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from sandbox.zstack_sim.cli import load_hooks
from sandbox.zstack_sim.hooks import SYNTHETIC_LUN_SIZE, NoHooks
from sandbox.zstack_sim.server import check_bind_address
from services.errors import ConfigError
from services.zstack import ZStackClient
from tests.zstack.conftest import FAST_POLL

PROJECT_ROOT = Path(__file__).resolve().parents[2]


async def test_standalone_simulator_prints_its_url_and_serves() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from bot.cli import main; main()", "sim", "zstack", "--role", "nested",
        "--port", "0", "--latency-scale", "0", cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            line = (await process.stdout.readline()).decode()
            credentials = (await process.stdout.readline()).decode()
        assert line.startswith("ZStack simulator (nested) on http://127.0.0.1:") and line.strip().endswith("/zstack/v1")
        assert "admin" in credentials and "password" in credentials
        url = line.split(" on ", 1)[1].strip()
        async with ZStackClient(url, "admin", SecretStr("password"), poll_policy=FAST_POLL) as client:
            zone = await client.infra.create_zone("from-cli")
            assert (await client.get_raw("QueryZone", zone.uuid)) is not None
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            await process.wait()
    assert process.returncode == 0


def test_hooks_load_lazily_from_a_spec() -> None:
    hooks = load_hooks("sandbox.zstack_sim.hooks:NoHooks", "outer")
    assert isinstance(hooks, NoHooks)
    for spec in ("nonsense", "no.such.module:Hooks", "sandbox.zstack_sim.hooks:Missing"):
        with pytest.raises(ConfigError):
            load_hooks(spec, "nested")


def test_simulator_binds_only_where_labbot_may_send_traffic() -> None:
    for host in ("127.0.0.1", "127.0.0.9", "198.18.0.1", "198.19.255.254", "0.0.0.0", "::1"):
        assert check_bind_address(host) == host
    for host in ("10.0.0.1", "192.168.1.1", "198.20.0.1", "localhost", "8.8.8.8"):
        with pytest.raises(ConfigError):
            check_bind_address(host)


async def test_synthetic_lun_is_stable_per_portal() -> None:
    hooks = NoHooks()
    first, again = await hooks.discover_iscsi("198.19.0.10", 3260), await hooks.discover_iscsi("198.19.0.10", 3260)
    other = await hooks.discover_iscsi("198.19.0.10", 3261)
    assert first == again and first != other
    [target] = first
    [lun] = target.luns
    assert target.iqn.startswith("iqn.2026-11.io.labbot:") and lun.size == SYNTHETIC_LUN_SIZE
    assert lun.wwid.startswith("36001405") and len(lun.wwid) == 33 and int(lun.wwid, 16)
