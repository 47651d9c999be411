"""docker-compose.yml, validated by Debian's ``docker-compose`` without a Docker engine (``config`` only).

Checks what a demanding operator relies on: required secrets fail fast with a message naming them, the
database is healthy before labbot starts, only one service migrates, and in the lab-in-a-box VM2 sits on the
VPC alone (reachable only through VM1). The Dockerfile is checked against the tree it copies from.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.zstack_sim.seed import FIXED_RANGES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed (apt-get install "
                                "docker-compose; `make setup` does it as root)")

REQUIRED = {
    "POSTGRES_PASSWORD": "s3cret-db",
    "LABBOT_SECRET_KEY": "a-real-secret-key-for-tests",
    "SLACK_BOT_TOKEN": "xoxb-1234567890-abcdef",
    "LABBOT_PLATFORM_URL": "http://10.0.0.5:8080/zstack/v1",
    "LABBOT_PLATFORM_PASSWORD": "platform-pw",
}


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose -f docker-compose.yml ARGS config`` with only ``env`` set (plus PATH/HOME)."""
    environ = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    environ.update(env or {})
    assert COMPOSE is not None
    return subprocess.run([COMPOSE, "-f", str(ROOT / "docker-compose.yml"), "--project-directory", str(ROOT),
                           *args, "config"], env=environ, capture_output=True, text=True, timeout=60)


def config(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = compose(*args, env=REQUIRED if env is None else env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_default_stack_is_labbot_and_a_healthy_postgres() -> None:
    cfg = config()
    # `config` lists every service; profiles decide which ones `up` starts.
    always = {name for name, service in cfg["services"].items() if not service.get("profiles")}
    assert always == {"postgres", "labbot"}
    assert {name: s.get("profiles") for name, s in cfg["services"].items() if name not in always} == {
        "worker": ["replicas"], "outer-sim": ["sandbox"], "vm1": ["sandbox"], "vm2": ["sandbox"]}
    postgres, labbot = cfg["services"]["postgres"], cfg["services"]["labbot"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "pgdata" in cfg["volumes"] and any(str(v).startswith("pgdata:") for v in postgres["volumes"])
    assert labbot["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    env = labbot["environment"]
    assert env["LABBOT_DATABASE_URL"] == "postgresql+asyncpg://labbot:s3cret-db@postgres:5432/labbot"
    assert env["LABBOT_MIGRATE"] == "1" and env["SLACK_BOT_TOKEN"] == REQUIRED["SLACK_BOT_TOKEN"]
    assert env["SLACK_APP_TOKEN"] is None and env["SLACK_SIGNING_SECRET"] is None  # passed through only when set
    assert labbot["command"][0] == "run" and "healthz" in " ".join(labbot["healthcheck"]["test"])
    assert labbot["build"]["target"] == "labbot" and "backend" in labbot["networks"]
    assert cfg["networks"]["backend"]["internal"] is True


def test_optional_settings_pass_through_when_set() -> None:
    env = config(env={**REQUIRED, "SLACK_APP_TOKEN": "xapp-1-abcdefgh", "LABBOT_CHANNEL": "C123"})
    labbot = env["services"]["labbot"]["environment"]
    assert labbot["SLACK_APP_TOKEN"] == "xapp-1-abcdefgh" and labbot["LABBOT_CHANNEL"] == "C123"


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_each_required_secret_fails_fast_by_name(missing: str) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != missing}
    result = compose(env=env)
    assert result.returncode != 0
    assert re.search(rf"set {missing} \(", result.stderr), result.stderr


def test_replicas_wait_for_the_migrating_service() -> None:
    worker = config("--profile", "replicas")["services"]["worker"]
    assert worker["command"] == ["worker"] and worker["environment"]["LABBOT_MIGRATE"] == "0"
    assert worker["depends_on"] == {"labbot": {"condition": "service_healthy"}}


def test_the_lab_in_a_box_puts_vm2_behind_vm1() -> None:
    sandbox_env = dict(line.split("=", 1) for line in (ROOT / "docker/sandbox.env").read_text().splitlines()
                       if line and not line.startswith("#"))
    cfg = config("--profile", "sandbox", env={**REQUIRED, **sandbox_env})
    services, networks = cfg["services"], cfg["networks"]
    assert {"outer-sim", "vm1", "vm2"} <= set(services)
    assert services["labbot"]["environment"]["LABBOT_PLATFORM_URL"] == "http://outer-sim:8080/zstack/v1"
    assert services["labbot"]["environment"]["LABBOT_DEFAULT_PROFILE"] == "sandbox"
    assert set(services["vm1"]["networks"]) == {"lab-public", "lab-vpc"}
    assert set(services["vm2"]["networks"]) == {"lab-vpc"}
    assert "lab-vpc" not in services["labbot"]["networks"] and "lab-vpc" not in services["outer-sim"]["networks"]
    assert networks["lab-vpc"]["internal"] is True
    assert services["vm1"]["build"]["target"] == services["vm2"]["build"]["target"] == "vm"
    assert all("NET_ADMIN" in services[vm]["cap_add"] and services[vm]["init"] is True for vm in ("vm1", "vm2"))
    assert "lab_in_a_box.hooks:ComposeHooks" in services["outer-sim"]["command"]
    # The compose subnets hold the simulator's seeded ranges (sandbox-public, sandbox-vpc), and the fixed
    # container addresses stay outside them, so ZStack's allocations never collide with a container.
    for network, l3 in (("lab-public", "sandbox-public"), ("lab-vpc", "sandbox-vpc")):
        subnet = ipaddress.ip_network(networks[network]["ipam"]["config"][0]["subnet"])
        start, end, _, gateway = FIXED_RANGES[l3]
        assert ipaddress.ip_address(start) in subnet and ipaddress.ip_address(end) in subnet
        assert networks[network]["ipam"]["config"][0]["gateway"] == gateway
        for service in services.values():
            fixed = (service.get("networks") or {}).get(network) or {}
            if fixed.get("ipv4_address"):
                assert ipaddress.ip_address(fixed["ipv4_address"]) > ipaddress.ip_address(end)


def test_the_dockerfile_copies_what_exists_and_runs_the_entrypoints() -> None:
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.MULTILINE))
    assert {"labbot", "vm"} <= targets
    for script in re.findall(r'ENTRYPOINT \["(/app/[^"]+)"\]', dockerfile):
        path = ROOT / script.removeprefix("/app/")
        assert path.exists() and os.access(path, os.X_OK), script
