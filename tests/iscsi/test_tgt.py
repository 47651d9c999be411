"""tgt backend: parsing real ``tgtadm`` output, and the commands it issues (transcripts) for each situation.

The same backend is exercised for real against tgtd in the sandbox tests; these cover the branches a
healthy sandbox does not reach (daemon stopped, drifted ACLs, a missing portal, a conflicting LUN).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from services import shell
from services.iscsi import firewall, vpd
from services.iscsi.base import IscsiError, TargetSpec
from services.iscsi.tgt import TgtBackend, conf_file, parse_accounts, parse_portals, parse_targets, render_conf
from tests.iscsi.transcript import Transcript, fail, ok

DATA = Path(__file__).with_name("data")
SHOW = DATA.joinpath("tgt-show-target.txt").read_text()
PORTALS = DATA.joinpath("tgt-show-portal.txt").read_text()
DEVICE = "/dev/disk/by-id/virtio-0123456789abcdef0123"
SPEC = TargetSpec(iqn="iqn.2026-11.io.labbot:lab1", device=DEVICE,
                  initiator_iqn="iqn.2026-11.io.labbot.sandbox:22222222", portal_ip="198.19.0.10", port=3260)
SCSI_ID, SCSI_SN = vpd.scsi_id_for(SPEC.iqn), vpd.serial_for(SPEC.iqn)
TGTADM = "tgtadm --lld iscsi "
SIZE = (f"if [ -b {DEVICE} ]; then blockdev --getsize64 {DEVICE}; else stat -L -c %s {DEVICE}; fi", ok("53687091200\n"))
CONF = conf_file(SPEC.iqn)
ENABLE = ("command -v systemctl >/dev/null 2>&1 || exit 0; systemctl is-enabled tgt >/dev/null 2>&1 || "
          "systemctl enable tgt")


def show_with(acls: list[str], scsi_id: str = SCSI_ID, device: str = DEVICE) -> str:
    return (
        f"Target 1: {SPEC.iqn}\n    System information:\n        Driver: iscsi\n        State: ready\n"
        "    I_T nexus information:\n    LUN information:\n        LUN: 0\n            Type: controller\n"
        "            SCSI ID: IET     00010000\n            SCSI SN: beaf10\n"
        "            Backing store path: None\n"
        f"        LUN: 1\n            Type: disk\n            SCSI ID: {scsi_id}\n            SCSI SN: {SCSI_SN}\n"
        f"            Size: 53687 MB, Block size: 512\n            Backing store path: {device}\n"
        "    Account information:\n    ACL information:\n" + "".join(f"        {a}\n" for a in acls)
    )


def test_parse_real_tgtadm_output() -> None:
    alpha, beta = parse_targets(SHOW)
    assert (alpha.tid, alpha.iqn) == (1, "iqn.2026-11.io.labbot:alpha")
    assert (beta.tid, beta.iqn) == (2, "iqn.2026-11.io.labbot:beta")
    assert alpha.luns[1].scsi_id == "0123456789abcdef01234567" and alpha.luns[1].scsi_sn == "lb0123456789abcd"
    assert alpha.luns[1].backing_path == "/tmp/tgtt/d1.img" and alpha.luns[0].type == "controller"
    assert alpha.acls == ["iqn.2026-11.io.labbot.sandbox:22222222"]
    assert beta.acls == ["ALL", "198.19.0.5", "iqn.1994-05.com.redhat:abc"]
    assert beta.luns[1].scsi_id == "IET     00020001"
    assert parse_portals(PORTALS) == [("[::]", 3260), ("0.0.0.0", 3260)]
    assert parse_targets("") == []


def test_conf_file_matches_what_is_configured_live() -> None:
    text = render_conf(SPEC, SCSI_ID, SCSI_SN)
    assert f"<target {SPEC.iqn}>" in text and f"<backing-store {DEVICE}>" in text
    assert f"scsi_id {SCSI_ID}" in text and f"initiator-name {SPEC.initiator_iqn}" in text
    assert CONF == "/etc/tgt/conf.d/labbot-lab1.conf"


def write_conf_command() -> str:
    content = render_conf(SPEC, SCSI_ID, SCSI_SN)
    return (f"mkdir -p /etc/tgt/conf.d && umask 077 && printf '%s' {shell.quote(content)} > {CONF}.tmp && "
            f"mv {CONF}.tmp {CONF}")


async def test_ensure_from_nothing_issues_each_change_once() -> None:
    run = Transcript([
        SIZE,
        (TGTADM + "--op show --mode target", ok("")),
        (TGTADM + f"--op new --mode target --tid 1 -T {SPEC.iqn}", ok()),
        (TGTADM + f"--op new --mode logicalunit --tid 1 --lun 1 --backing-store {DEVICE}", ok()),
        (TGTADM + f"--op update --mode logicalunit --tid 1 --lun 1 --params scsi_id={SCSI_ID},scsi_sn={SCSI_SN}", ok()),
        (TGTADM + f"--op bind --mode target --tid 1 --initiator-name {SPEC.initiator_iqn}", ok()),
        (TGTADM + "--op show --mode portal", ok(PORTALS)),
        (f"cat {CONF}", fail(f"cat: {CONF}: No such file or directory")),
        (write_conf_command(), ok()),
        (ENABLE, ok()),
        (firewall.open_command(3260, "labbot-lab1"), ok("no-firewalld\n")),
        (TGTADM + "--op show --mode target", ok(show_with([SPEC.initiator_iqn]))),
        SIZE,
    ])
    info = await TgtBackend(run).ensure(SPEC)
    run.finished()
    assert (info.iqn, info.lun, info.size_bytes, info.serial) == (SPEC.iqn, 1, 53687091200, SCSI_SN)
    assert info.wwid == vpd.tgt_wwid(SCSI_ID)


async def test_drifted_target_is_converged_and_a_second_target_gets_the_next_tid() -> None:
    other = show_with([]).replace(SPEC.iqn, "iqn.2026-11.io.labbot:lab0").replace("Target 1:", "Target 4:")
    drifted = show_with(["ALL", "198.19.0.99", "iqn.1994-05.com.redhat:intruder"], scsi_id="IET     00010001")
    run = Transcript([
        SIZE,
        (TGTADM + "--op show --mode target", ok(other + drifted)),
        (TGTADM + f"--op update --mode logicalunit --tid 1 --lun 1 --params scsi_id={SCSI_ID},scsi_sn={SCSI_SN}", ok()),
        (TGTADM + "--op unbind --mode target --tid 1 --initiator-address ALL", ok()),
        (TGTADM + "--op unbind --mode target --tid 1 --initiator-address 198.19.0.99", ok()),
        (TGTADM + "--op unbind --mode target --tid 1 --initiator-name iqn.1994-05.com.redhat:intruder", ok()),
        (TGTADM + f"--op bind --mode target --tid 1 --initiator-name {SPEC.initiator_iqn}", ok()),
        (TGTADM + "--op show --mode portal", ok("Portal: 127.0.0.1:3261,1\n")),
        (TGTADM + "--op new --mode portal --param portal=198.19.0.10:3260", ok()),
        (f"cat {CONF}", ok(render_conf(SPEC, SCSI_ID, SCSI_SN))),
        (ENABLE, ok()),
        (firewall.open_command(3260, "labbot-lab1"), ok("opened-by-labbot\n")),
        (TGTADM + "--op show --mode target", ok(other + show_with([SPEC.initiator_iqn]))),
        SIZE,
    ])
    await TgtBackend(run).ensure(SPEC)
    run.finished()


async def test_a_stopped_daemon_is_started_through_systemd() -> None:
    down = fail("tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is not connected", 107)
    run = Transcript([
        (TGTADM + "--op show --mode target", down),
        ("test -d /run/systemd/system && systemctl start tgt", ok()),
        (TGTADM + "--op show --mode target", ok(show_with([SPEC.initiator_iqn]))),
        SIZE,
    ])
    info = await TgtBackend(run).describe(SPEC.iqn)
    assert info is not None and info.wwid == vpd.tgt_wwid(SCSI_ID)
    run.finished()
    without_systemd = Transcript([
        (TGTADM + "--op show --mode target", down),
        ("test -d /run/systemd/system && systemctl start tgt", fail("", 1)),
    ])
    with pytest.raises(IscsiError, match="tgtd is not running on VM1"):
        await TgtBackend(without_systemd).describe(SPEC.iqn)


async def test_refuses_to_swap_the_disk_under_a_live_target() -> None:
    run = Transcript([SIZE, (TGTADM + "--op show --mode target", ok(show_with([], device="/dev/vdc")))])
    with pytest.raises(IscsiError, match="already exports /dev/vdc as LUN 1"):
        await TgtBackend(run).ensure(SPEC)


async def test_failures_carry_the_command_output() -> None:
    run = Transcript([
        SIZE,
        (TGTADM + "--op show --mode target", ok("")),
        (TGTADM + f"--op new --mode target --tid 1 -T {SPEC.iqn}", fail("tgtadm: this target already exists", 22)),
    ])
    with pytest.raises(IscsiError, match=r"creating target .* failed on VM1 \(exit 22\): tgtadm: this target already"):
        await TgtBackend(run).ensure(SPEC)


async def test_teardown_removes_exactly_the_target_its_file_and_port() -> None:
    run = Transcript([
        (TGTADM + "--op show --mode target", ok(show_with([SPEC.initiator_iqn]))),
        (TGTADM + "--op delete --force --mode target --tid 1", ok()),
        (f"rm -f {CONF}", ok()),
        (firewall.close_command("labbot-lab1"), ok("closed 3260\n")),
    ])
    await TgtBackend(run).teardown(SPEC.iqn)
    run.finished()
    again = Transcript([
        (TGTADM + "--op show --mode target", ok("")),
        (f"rm -f {CONF}", ok()),
        (firewall.close_command("labbot-lab1"), ok("")),
    ])
    await TgtBackend(again).teardown(SPEC.iqn)
    again.finished()


CHAP_SPEC = TargetSpec(iqn=SPEC.iqn, device=DEVICE, initiator_iqn=SPEC.initiator_iqn, portal_ip="198.19.0.10",
                       port=3260, chap_user="labbot-lab1", chap_secret=SecretStr("S3cretS3cret99"))


def test_chap_accounts_are_parsed_and_persisted() -> None:
    bound = show_with([SPEC.initiator_iqn]).replace("    Account information:\n",
                                                    "    Account information:\n        labbot-lab1\n")
    assert parse_targets(bound)[0].accounts == ["labbot-lab1"] and parse_targets(show_with([]))[0].accounts == []
    assert parse_accounts("Account list:\n    labbot-lab1\n    other\n") == ["labbot-lab1", "other"]
    assert "    incominguser labbot-lab1 S3cretS3cret99\n</target>" in render_conf(CHAP_SPEC, SCSI_ID, SCSI_SN)
    assert "incominguser" not in render_conf(SPEC, SCSI_ID, SCSI_SN)
    with pytest.raises(ValueError, match="12-16 letters and digits"):
        TargetSpec(iqn=SPEC.iqn, device=DEVICE, initiator_iqn=SPEC.initiator_iqn, portal_ip="198.19.0.10",
                   chap_user="u", chap_secret=SecretStr("short; reboot"))
    with pytest.raises(ValueError, match="both a user name and a secret"):
        TargetSpec(iqn=SPEC.iqn, device=DEVICE, initiator_iqn=SPEC.initiator_iqn, portal_ip="198.19.0.10",
                   chap_user="u")
    assert "S3cretS3cret99" not in repr(CHAP_SPEC)


async def test_chap_creates_the_account_binds_only_it_and_a_second_run_changes_nothing() -> None:
    content = render_conf(CHAP_SPEC, SCSI_ID, SCSI_SN)
    write = (f"mkdir -p /etc/tgt/conf.d && umask 077 && printf '%s' {shell.quote(content)} > {CONF}.tmp && "
             f"mv {CONF}.tmp {CONF}")
    stranger = show_with([SPEC.initiator_iqn]).replace("    Account information:\n",
                                                       "    Account information:\n        intruder\n")
    run = Transcript([
        SIZE,
        (TGTADM + "--op show --mode target", ok(stranger)),
        (TGTADM + "--op show --mode portal", ok(PORTALS)),
        (f"cat {CONF}", ok(render_conf(SPEC, SCSI_ID, SCSI_SN))),
        (write, ok()),
        (ENABLE, ok()),
        (TGTADM + "--op show --mode account", ok("Account list:\n    intruder\n")),
        # The secret comes from the conf.d file on VM1, never from the command text.
        (TGTADM + "--op new --mode account --user labbot-lab1 --password "
                  f"\"$(sed -n 's/^    incominguser 'labbot-lab1' //p' {CONF})\"", ok()),
        (TGTADM + "--op unbind --mode account --tid 1 --user intruder", ok()),
        (TGTADM + "--op bind --mode account --tid 1 --user labbot-lab1", ok()),
        (firewall.open_command(3260, "labbot-lab1"), ok("no-firewalld\n")),
        (TGTADM + "--op show --mode target", ok(show_with([SPEC.initiator_iqn]))),
        SIZE,
    ])
    await TgtBackend(run).ensure(CHAP_SPEC)
    run.finished()
    assert not any("S3cretS3cret99" in c for c in run.commands if not c.startswith("mkdir -p /etc/tgt/conf.d"))
    done = show_with([SPEC.initiator_iqn]).replace("    Account information:\n",
                                                   "    Account information:\n        labbot-lab1\n")
    again = Transcript([
        SIZE,
        (TGTADM + "--op show --mode target", ok(done)),
        (TGTADM + "--op show --mode portal", ok(PORTALS)),
        (f"cat {CONF}", ok(content)),
        (ENABLE, ok()),
        (TGTADM + "--op show --mode account", ok("Account list:\n    labbot-lab1\n")),
        (firewall.open_command(3260, "labbot-lab1"), ok("no-firewalld\n")),
        (TGTADM + "--op show --mode target", ok(done)),
        SIZE,
    ])
    await TgtBackend(again).ensure(CHAP_SPEC)
    again.finished()
