"""Sandbox configuration and naming: everything named so that ``down`` can find it, nothing outside 198.18/15."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.config import SandboxConfig, short
from sandbox.network import nic_mac, nic_network
from sandbox.system import SandboxError
from sandbox.vm import boot_script
from sandbox.zstack_sim.hooks import NicPlan
from services.errors import ConfigError

UUID = "1a2b3c4d5e6f708192a3b4c5d6e7f809"


def test_names_fit_linux_interface_limits_and_carry_the_prefix() -> None:
    config = SandboxConfig(base_dir=Path("/var/lib/labbot-sandbox"), prefix="lbxx")
    names = [config.veth_vm_side(UUID, 9), config.veth_bridge_side(UUID, 9), config.host_bridge("f" * 64)]
    assert all(len(name) <= 15 and name.startswith("lbxx") for name in names)
    assert config.vm_netns(UUID) == "lbxx-1a2b3c4d" and config.segment_netns(UUID) == "lbxx-net-1a2b3c4d"
    assert config.vm_dir(UUID) == Path("/var/lib/labbot-sandbox/vms/1a2b3c4d")
    assert short("1A2B3C4D-5E6F-7081-92A3-B4C5D6E7F809") == "1a2b3c4d"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prefix": "lbx1"}, "2-4 lower-case letters"),
        ({"base_dir": Path("relative")}, "absolute"),
        ({"base_dir": Path("/tmp/sandbox")}, "must not be under /tmp"),
        ({"base_dir": Path("/root/labbot")}, "must not be under /root"),
        ({"base_dir": Path("/etc")}, "must not be under /etc"),
        ({"base_dir": Path("/var")}, "too close to /"),
        ({"public_gateway": "10.0.0.1/24"}, "inside 198.18.0.0/15"),
        ({"public_gateway": "198.18.0.0/22"}, "host address"),
        ({"public_gateway": "gateway"}, "not an address/prefix"),
    ],
)
def test_unsafe_configurations_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SandboxConfig(**changes)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABBOT_SANDBOX_DIR", "/srv/labbot-sandbox")
    monkeypatch.setenv("LABBOT_SANDBOX_PREFIX", "lbz")
    monkeypatch.setenv("LABBOT_SANDBOX_PUBLIC", "198.18.64.1/24")
    config = SandboxConfig.from_env()
    assert (config.base_dir, config.prefix, config.public_gateway) == (
        Path("/srv/labbot-sandbox"), "lbz", "198.18.64.1/24",
    )
    with pytest.raises(ConfigError):
        short("not-a-uuid")


def test_nic_addresses_must_stay_in_the_benchmark_range() -> None:
    good = NicPlan("l3", "sandbox-public", "198.18.0.10", "255.255.252.0", "198.18.0.1", True)
    assert str(nic_network(good)) == "198.18.0.10/22"
    for ip, mask in [("10.0.0.5", "255.255.255.0"), ("198.20.0.1", "255.255.255.0"), ("198.19.0.1", "255.0.0.0")]:
        with pytest.raises(SandboxError):
            nic_network(NicPlan("l3", "x", ip, mask, "", False))


def test_macs_are_stable_local_unicast_addresses() -> None:
    assert nic_mac(UUID, 0) == nic_mac(UUID, 0) != nic_mac(UUID, 1)
    first = int(nic_mac(UUID, 0).split(":")[0], 16)
    assert first & 0x02 and not first & 0x01


def test_boot_script_gives_the_vm_private_mounts_then_runs_sshd() -> None:
    script = boot_script(Path("/var/lib/labbot-sandbox/vms/1a2b3c4d"), "lab1-vm1")
    for path in ("/etc", "/dev", "/root", "/tmp", "/var/tmp"):
        assert f"lowerdir={path},upperdir=/var/lib/labbot-sandbox/vms/1a2b3c4d/layers/" in script
    assert "mount -t tmpfs -o mode=0755 tmpfs /run" in script
    assert 'mount --bind "$vm/by-id" /dev/disk/by-id' in script
    assert script.index("/usr/sbin/tgtd -f") < script.index("exec /usr/sbin/sshd -D -e")
    assert script.rstrip().endswith('exec /usr/sbin/sshd -D -e -f "$vm/ssh/sshd_config"')
