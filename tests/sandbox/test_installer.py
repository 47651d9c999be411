"""The lab-in-a-box "ZStack installer" on VM2, run as the engine runs it, and the nested simulator it starts.

Uploaded by SFTP and run detached through VM1; it must survive the SSH connection dying, be idempotent, and
leave a management node whose iSCSI calls are answered from a real discovery of VM1's target: the wwid the
nested ZStack offers as a SharedBlock candidate is the one the iSCSI service reported for the lab.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from sandbox import system
from sandbox.hooks import OuterSandboxHooks
from sandbox.images import NESTED_IMAGE, ensure_nested_image
from sandbox.vm import INSTALLER_IN_VM, SILENT_DNS
from services.iscsi.base import TargetSpec
from services.iscsi.disk import find_data_disk
from services.iscsi.initiator import ensure_initiator_name
from services.iscsi.naming import target_iqn
from services.iscsi.tgt import TgtBackend
from services.labs.build.image import IMAGE_DIR, serve_image, stop_image_server, upload_image
from services.labs.build.installer import InstallerNotFoundError, clean_failed_install, find_installer
from services.ssh import LabSSH
from services.ssh.detached import follow, reset_job, start_detached
from services.zstack.client import ZStackClient
from services.zstack.errors import ZStackError
from tests.sandbox.labbox import PROJECT, VM2_ROOT_PASSWORD, Lab, LabBox, drop_connections, require_sandbox

pytestmark = pytest.mark.sandbox

INSTALLER = PROJECT / "sandbox" / "assets" / "zstack-installer.bin"
COMMAND = f"bash {INSTALLER_IN_VM} -E"


@pytest.fixture(scope="module")
def box() -> Iterator[LabBox]:
    require_sandbox()
    box = LabBox("install")
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def lab(box: LabBox) -> Lab:
    ensure_nested_image()
    return box.run(box.make_lab("instlab", volume_size=256 * 1024**2))


async def install(ssh: LabSSH, job: str, on_line: object = None, command: str = COMMAND) -> int:
    """Run the installer VM2's image has, as the engine runs it (detached, followed)."""
    await start_detached(ssh, "vm2", job, command)
    return await follow(ssh, "vm2", job, on_line=on_line, poll_interval=0.2, timeout=120)  # type: ignore[arg-type]


async def installed(ssh: LabSSH, job: str) -> None:
    """The management node is up on VM2 (installed now, or by an earlier test of this module's lab)."""
    if (await ssh.run("vm2", "test -d /usr/local/zstack", timeout=10, check=False)).exit_status != 0:
        assert await install(ssh, job) == 0


async def test_installer_survives_a_drop_and_leaves_a_ready_management_node(box: LabBox, lab: Lab) -> None:
    lines: list[str] = []
    dropped = asyncio.Event()

    async def on_line(line: str) -> None:
        lines.append(line)
        if not dropped.is_set():
            dropped.set()
            await drop_connections(box, lab.vm1)  # the SSH path dies while the install runs

    async with lab.ssh() as ssh:
        assert await install(ssh, "install_zstack", on_line) == 0
        assert lines[-1] == "Management node is running"
        percentages = [int(m.group(1)) for line in lines if (m := re.search(r"\[\s*(\d+)%\]", line))]
        assert percentages[0] < percentages[-1] == 100 and percentages == sorted(percentages)
        port = await ssh.forward_local("vm2", 8080)
        async with httpx.AsyncClient(timeout=10) as http:
            ready = await http.get(f"http://127.0.0.1:{port}/zstack/v1/management-nodes/ready")
        assert ready.status_code == 200

        # Like the real installer: a second run refuses the installed host, and stops ZStack on its way out.
        await reset_job(ssh, "vm2", "install_zstack")
        again: list[str] = []

        async def collect(line: str) -> None:
            again.append(line)

        assert await install(ssh, "install_zstack", collect) == 1
        assert any("/usr/local/zstack is existing. Please delete it manually" in line for line in again), again
        assert (await ssh.run("vm2", "zstack-ctl status", timeout=10)).stdout.strip() == "MN status: Stopped"
        # The cleanup it asks for is not enough: the database is left, and only -D (or -k) gets past it.
        assert await clean_failed_install(ssh, "/usr/local/zstack") == "removed /usr/local/zstack"
        await reset_job(ssh, "vm2", "install_zstack")
        again.clear()
        assert await install(ssh, "install_zstack", collect) == 1
        assert any("detected existing zstack database" in line for line in again), again
        await clean_failed_install(ssh, "/usr/local/zstack")
        await reset_job(ssh, "vm2", "install_zstack")
        assert await install(ssh, "install_zstack", command=f"bash {INSTALLER_IN_VM} -E -D") == 0
        count = await ssh.run("vm2", "pgrep -c -f 'bot.cli sim zstack --role nested'", timeout=10)
        assert count.stdout.strip() == "1"  # one management node, not two


async def test_the_installer_is_found_where_a_zstack_iso_keeps_it_and_its_absence_is_named(lab: Lab) -> None:
    async with lab.ssh() as ssh:
        assert await find_installer(ssh, ["/opt/zstack-installer.bin", "/opt/zstack-dvd/*/*/zstack-installer.bin"]) \
            == INSTALLER_IN_VM
        with pytest.raises(InstallerNotFoundError) as missing:
            await find_installer(ssh, ["/opt/zstack-installer.bin", "/opt/zstack-dvd/*/c76/zstack-installer.bin"])
    assert "tried /opt/zstack-installer.bin (no such file); /opt/zstack-dvd/*/c76/zstack-installer.bin (no such " \
        "file)" in str(missing.value)


async def test_nested_zstack_offers_the_lab_lun_by_the_wwid_labbot_recorded(lab: Lab) -> None:
    async with lab.ssh() as ssh:
        await installed(ssh, "install_nested")
        device = await find_data_disk(ssh.runner("vm1"), lab.volume_uuid, None)
        spec = TargetSpec(iqn=target_iqn("iqn.2026-11.io.labbot", lab.name), device=device,
                          initiator_iqn=await ensure_initiator_name(ssh.runner("vm2"), "iqn.2026-11.io.labbot:t.vm2"),
                          portal_ip=lab.vm1_vpc_ip)
        info = await TgtBackend(ssh.runner("vm1")).ensure(spec)
        port = await ssh.forward_local("vm2", 8080)
        async with ZStackClient(f"http://127.0.0.1:{port}/zstack/v1", "admin", SecretStr("password")) as nested:
            zone = await nested.infra.create_zone("zone-1")
            cluster = await nested.infra.create_cluster("cluster-1", zone.uuid)
            with pytest.raises(ZStackError, match=r"unable to connect to KVM.* to do DNS check"):
                await nested.infra.add_kvm_host("vm2", lab.vm2_ip, cluster.uuid, username="root",
                                          password=SecretStr("not-the-password"))  # the deploy really logs in
            await nested.infra.add_kvm_host("vm2", lab.vm2_ip, cluster.uuid, username="root",
                                      password=SecretStr(VM2_ROOT_PASSWORD))
            kept = await ssh.run("vm2", "cat /etc/iscsi/initiatorname.iscsi", timeout=10)
            assert kept.stdout == f"InitiatorName={spec.initiator_iqn}\n"  # the deploy keeps the name labbot wrote
            server = await nested.storage.add_iscsi_server(lab.vm1_vpc_ip, port=3260, name="vm1")
            assert [(t.iqn, [lun.wwid for lun in t.iscsi_luns]) for t in server.iscsi_targets] == [
                (info.iqn, [info.wwid]),
            ]
            await nested.storage.attach_iscsi_server_to_cluster(server.uuid, cluster.uuid)
            candidates = await nested.storage.get_shared_block_candidates(cluster.uuid)
    assert [(c.wwid, c.size) for c in candidates] == [(info.wwid, info.size_bytes)]


async def test_the_kvm_host_deploy_makes_the_initiator_name_when_labbot_did_not(box: LabBox) -> None:
    box.hooks = OuterSandboxHooks(box.config)  # its segment lock must belong to this test's event loop
    lab = await box.make_lab("deploylab", volume_size=64 * 1024**2)
    async with lab.ssh() as ssh:
        absent = await ssh.run("vm2", "test -e /etc/iscsi/initiatorname.iscsi", timeout=10, check=False)
        assert absent.exit_status == 1  # a fresh ZStack ISO host has no initiator yet
        assert await install(ssh, "install_deploy") == 0
        port = await ssh.forward_local("vm2", 8080)
        async with ZStackClient(f"http://127.0.0.1:{port}/zstack/v1", "admin", SecretStr("password")) as nested:
            zone = await nested.infra.create_zone("zone-1")
            cluster = await nested.infra.create_cluster("cluster-1", zone.uuid)
            await nested.infra.add_kvm_host("vm2", lab.vm2_ip, cluster.uuid, username="root",
                                      password=SecretStr(VM2_ROOT_PASSWORD))
        made = await ssh.run("vm2", "cat /etc/iscsi/initiatorname.iscsi", timeout=10)
    assert re.fullmatch(r"InitiatorName=iqn\.1994-05\.com\.redhat:[0-9a-f]{12}\n", made.stdout), made.stdout
    await box.hooks.vm_expunged(lab.vm1.vm_uuid)
    await box.hooks.vm_expunged(lab.vm2.vm_uuid)


async def test_the_image_served_from_vm1_is_really_downloaded_and_checked_by_the_nested_add_image(
    lab: Lab, tmp_path: Path
) -> None:
    page = tmp_path / "error-page.qcow2"
    page.write_text("<html><body>503 Service Unavailable</body></html>\n")  # what a proxy might hand out

    def url(name: str) -> str:
        return f"http://{lab.vm1_vpc_ip}:8000/{name}"

    async with lab.ssh() as ssh:
        await installed(ssh, "install_image")
        assert await upload_image(ssh, NESTED_IMAGE) == f"{IMAGE_DIR}/{NESTED_IMAGE.name}"
        assert not await ssh.upload("vm1", NESTED_IMAGE, f"{IMAGE_DIR}/{NESTED_IMAGE.name}")  # there: not sent again
        await upload_image(ssh, page)
        assert (await serve_image(ssh, address=lab.vm1_vpc_ip, port=8000, url=url(NESTED_IMAGE.name))).startswith(
            "server started")
    async with lab.ssh() as ssh:  # a new session: the server outlived the one that started it
        assert (await serve_image(ssh, address=lab.vm1_vpc_ip, port=8000, url=url(NESTED_IMAGE.name))).startswith(
            "server already running")
        port = await ssh.forward_local("vm2", 8080)
        async with ZStackClient(f"http://127.0.0.1:{port}/zstack/v1", "admin", SecretStr("password")) as nested:
            bs = await nested.storage.add_image_store_backup_storage("bs-image-test", lab.vm2_ip, username="root",
                                                             password=SecretStr(VM2_ROOT_PASSWORD), url="/zstack_bs")
            image = await nested.storage.add_image("cirros", url(NESTED_IMAGE.name), [bs.uuid], format="qcow2")
            assert (image.status, image.actual_size, image.size) == ("Ready", NESTED_IMAGE.stat().st_size,
                                                                     117_440_512)
            with pytest.raises(ZStackError, match="is raw, not the qcow2 image declared"):
                await nested.storage.add_image("page", url(page.name), [bs.uuid], format="qcow2")
            with pytest.raises(ZStackError, match=r"download failed.*HTTP 404"):
                await nested.storage.add_image("gone", url("no-such-image.qcow2"), [bs.uuid], format="qcow2")
            assert [i["name"] for i in await nested.query("QueryImage")] == ["cirros"]  # failed adds leave nothing
        await stop_image_server(ssh)
        listening = await ssh.run("vm1", "ss -ltn 'sport = :8000' | grep -c :8000", timeout=15, check=False)
        assert listening.stdout.strip() == "0"


async def test_vm1s_dns_never_answers_yet_the_image_server_listens_at_once(lab: Lab) -> None:
    # As on an offline lab platform, VM1's DNS server never answers, and its queries stay inside the VM.
    async with lab.ssh() as ssh:
        conf = await ssh.run("vm1", f"cat /etc/resolv.conf; ip route get {SILENT_DNS}", timeout=15)
        assert f"nameserver {SILENT_DNS}" in conf.stdout and "dev dns0" in conf.stdout
        received = "cat /sys/class/net/dns1/statistics/rx_packets"
        before = int((await ssh.run("vm1", received, timeout=15)).stdout)
        lookup = await ssh.run("vm1", "RES_OPTIONS='timeout:1 attempts:1' getent hosts labbot.invalid", timeout=30,
                               check=False)
        assert lookup.exit_status == 2  # no answer
        assert int((await ssh.run("vm1", received, timeout=15)).stdout) > before  # asked, inside the VM
        # A resolver that waits 30 s: `python3 -m http.server` would look up its address for that long before
        # it listened; labbot's server listens at once.
        await upload_image(ssh, NESTED_IMAGE)
        await ssh.run("vm1", "cp /etc/resolv.conf /root/resolv.conf.saved && "
                             "printf 'options timeout:30 attempts:1\\n' >> /etc/resolv.conf", timeout=15)
        try:
            await stop_image_server(ssh)
            url = f"http://{lab.vm1_vpc_ip}:8000/{NESTED_IMAGE.name}"
            done = await asyncio.wait_for(serve_image(ssh, address=lab.vm1_vpc_ip, port=8000, url=url), 20)
            assert done.startswith("server started")
        finally:
            await stop_image_server(ssh)
            await ssh.run("vm1", "mv /root/resolv.conf.saved /etc/resolv.conf", timeout=15)


async def test_expunging_vm2_stops_the_management_node(box: LabBox, lab: Lab) -> None:
    async with lab.ssh() as ssh:
        await installed(ssh, "install_expunge")
    inode = system.netns_inode(box.config.vm_netns(lab.vm2.vm_uuid))
    assert inode is not None
    def cmdline(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:  # a short-lived process (an SSH session ending) went meanwhile
            return b""

    simulators = [p for p in system.pids_in_netns({inode}) if b"--role\0nested" in cmdline(p)]
    assert len(simulators) == 1
    await box.hooks.vm_expunged(lab.vm2.vm_uuid)
    assert not system.pid_alive(simulators[0]) and not system.pids_in_netns({inode})


def test_the_installer_refuses_to_run_outside_a_sandbox_vm() -> None:
    usage = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True, check=False)
    assert usage.returncode == 64 and "usage: bash" in usage.stdout
    if Path("/etc/labbot-sandbox.env").exists():
        pytest.skip("this machine has a sandbox environment file")
    outside = subprocess.run(["bash", str(INSTALLER), "-E"], capture_output=True, text=True, check=False)
    assert outside.returncode == 2 and "only runs inside a labbot sandbox VM" in outside.stdout
