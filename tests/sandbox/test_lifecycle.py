"""``labbot sandbox up|status|down``: prepare, inspect, and remove everything, crashed leftovers included."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from sandbox import lifecycle, system, vm
from services.ssh.detached import start_detached
from tests.sandbox.labbox import PREFIX, LabBox, require_sandbox

runner = CliRunner()


def test_non_root_gets_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for command in ("up", "status", "down"):
        result = runner.invoke(app, ["sandbox", command, "--dir", "/var/lib/labbot-sandbox-never"])
        assert result.exit_code == 2
        assert "the lab-in-a-box needs root" in result.output
    assert not Path("/var/lib/labbot-sandbox-never").exists()


def test_non_linux_gets_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "darwin")
    result = runner.invoke(app, ["sandbox", "status"])
    assert result.exit_code == 2 and "needs Linux network namespaces (this is darwin)" in result.output


def test_an_unsafe_dir_is_refused() -> None:
    result = runner.invoke(app, ["sandbox", "status", "--dir", "/tmp/labbot"])
    assert result.exit_code != 0 and "must not be under /tmp" in str(result.exception)


@pytest.fixture
def box() -> Iterator[LabBox]:
    require_sandbox()
    box = LabBox("down")
    try:
        yield box
    finally:
        box.close()


def cli(box: LabBox, *args: str) -> str:
    result = runner.invoke(
        app, ["sandbox", *args, "--dir", str(box.config.base_dir), "--prefix", PREFIX],
        env={"LABBOT_SANDBOX_PUBLIC": box.config.public_gateway},
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.sandbox
def test_up_status_down_remove_everything_even_after_a_crash(box: LabBox) -> None:
    output = cli(box, "up")
    assert f"sandbox dir: {box.config.base_dir}" in output and "VMs: none" in output
    assert (box.config.base_dir / "python").read_text().strip()
    lab = box.run(box.make_lab("downlab", volume_size=1024**3))

    async def leave_a_mess() -> set[int]:
        async with lab.ssh() as ssh:  # work that would outlive labbot: detached jobs on both VMs
            await start_detached(ssh, "vm2", "forever", "sleep 600")
            await start_detached(ssh, "vm1", "forever", "sleep 600")
        inodes = {r.netns_inode for r in vm.all_records(box.config) if r.netns_inode}
        # A crash half-way through creating a VM: a namespace and a veth, no record.
        await system.run("ip", "netns", "add", f"{PREFIX}-deadbeef")
        await system.ip("link", "add", f"{PREFIX}deadbeefp0", "type", "veth", "peer", "name", f"{PREFIX}deadbeefe0")
        # A crash that lost a record, and one that deleted a namespace's name while its processes live on.
        (box.config.vm_dir(lab.vm2.vm_uuid) / "vm.json").unlink()
        await system.run("ip", "netns", "del", box.config.vm_netns(lab.vm1.vm_uuid))
        return inodes

    inodes = box.run(leave_a_mess())
    assert len(system.pids_in_netns(inodes)) >= 6  # sshd, tgtd, jobs ... in both VMs

    status = cli(box, "status")
    assert "VM downlab-vm1" in status and f"{PREFIX}-deadbeef" in status
    assert re.search(r"volume \w+\.img: 1\.0 GiB apparent", status)

    output = cli(box, "down")
    assert re.match(r"removed \d+ namespaces, \d+ links, \d+ processes, and the sandbox directory", output)
    assert not system.pids_in_netns(inodes)
    assert not [n for n in box.run(system.list_netns()) if n.startswith(f"{PREFIX}-")]
    assert not [link for link in box.run(system.list_links()) if link.startswith(PREFIX)]
    assert not box.config.base_dir.exists()
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_mentions(p, str(box.config.base_dir))]
    other_sandboxes = [link for link in box.run(system.list_links()) if re.match(r"^[a-z]{2,4}b[0-9a-f]{8}$", link)]
    routes = box.run(system.run("ip", "route", "show", "198.18.0.0/15")).stdout
    assert ("unreachable" in routes) == bool(other_sandboxes)  # the guard goes with the last sandbox

    assert cli(box, "down").startswith("removed 0 namespaces, 0 links, 0 processes")  # nothing left to do


def _cmdline_mentions(pid: str, text: str) -> bool:
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.sandbox
async def test_status_of_an_empty_sandbox(box: LabBox) -> None:
    status = await lifecycle.status(box.config)
    assert (status.vms, status.volumes, status.stray_namespaces) == ([], {}, [])
