"""targetcli (LIO) backend, by transcript: the exact commands for each situation, replies in real formats.

LIO needs kernel configfs, which the test machine lacks, so VM1's side is played back: the JSON dumps in
``data/lio-*.json`` are in rtslib-fb's format (that of /etc/target/saveconfig.json), one per stage of the
configuration, including another lab's target that must survive untouched.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.iscsi import firewall, lio_config, vpd
from services.iscsi.base import IscsiError, TargetSpec
from services.iscsi.targetcli import DUMP_COMMAND, TargetcliBackend
from tests.iscsi.transcript import Transcript, fail, ok

DATA = Path(__file__).with_name("data")
OTHER, CREATED, CONFIGURED, DRIFTED = (
    DATA.joinpath(f"lio-{name}.json").read_text() for name in ("other-lab", "created", "configured", "drifted")
)
DEVICE = "/dev/disk/by-id/virtio-0123456789abcdef0123"
IQN = "iqn.2026-11.io.labbot:lab1"
INITIATOR = "iqn.1994-05.com.redhat:5f2e9c8d7b6a"
SERIAL = "3f5a1c52-6f0e-4d0a-9a1e-2b7f0e8c3d11"
SPEC = TargetSpec(iqn=IQN, device=DEVICE, initiator_iqn=INITIATOR, portal_ip="198.19.0.10", port=3260)
TPG = f"/iscsi/{IQN}/tpg1"
HAVE_TARGETCLI = ("command -v targetcli", ok("/usr/bin/targetcli\n"))
SIZE = (f"if [ -b {DEVICE} ]; then blockdev --getsize64 {DEVICE}; else stat -L -c %s {DEVICE}; fi", ok("53687091200\n"))
ENABLE = ("command -v systemctl >/dev/null 2>&1 || exit 0; systemctl is-enabled target >/dev/null 2>&1 || "
          "systemctl enable target")
READ_SAVED = "cat /etc/target/saveconfig.json"


def writes_saved(expected: dict) -> tuple[str, Callable[[str], bool]]:
    """A step that writes saveconfig.json (with a backup) whose JSON equals ``expected``."""

    def check(command: str) -> bool:
        words = shlex.split(command)
        written = json.loads(words[words.index("printf") + 2])
        return (
            command.startswith("umask 077 && mkdir -p")
            and "/etc/target/backup/saveconfig-labbot-" in command
            and command.endswith("> /etc/target/saveconfig.json.labbot-tmp && mv /etc/target/saveconfig.json."
                                 "labbot-tmp /etc/target/saveconfig.json")
            and written == expected
        )

    return ("a write of saveconfig.json", check)


async def test_ensure_builds_the_target_and_saves_only_this_lab() -> None:
    merged = lio_config.merge_lab(lio_config.parse(OTHER), lio_config.parse(CONFIGURED), IQN, "labbot-lab1")
    run = Transcript([
        HAVE_TARGETCLI,
        SIZE,
        (DUMP_COMMAND, ok(OTHER)),
        (f"targetcli /backstores/block create name=labbot-lab1 dev={DEVICE}", ok("Created block storage object.")),
        (f"targetcli /iscsi create {IQN}", ok("Created target.\nCreated TPG 1.\nCreated default portal.")),
        (DUMP_COMMAND, ok(CREATED)),
        (f"targetcli {TPG}/luns create /backstores/block/labbot-lab1", ok("Created LUN 0.")),
        (f"targetcli {TPG}/acls create {INITIATOR}", ok("Created Node ACL.\nCreated Mapped LUN 0.")),
        (DUMP_COMMAND, ok(CONFIGURED)),
        (READ_SAVED, ok(OTHER)),
        (writes_saved(merged), ok()),
        (ENABLE, ok()),
        (firewall.open_command(3260, "labbot-lab1"), ok("opened\n")),
        SIZE,
    ])
    info = await TargetcliBackend(run).ensure(SPEC)
    run.finished()
    assert (info.iqn, info.lun, info.size_bytes, info.serial) == (IQN, 0, 53687091200, SERIAL)
    assert info.wwid == vpd.lio_wwid(SERIAL) == "360014053f5a1c526f0e4d0a9a1e2b7f0"
    other = lio_config.find_target(merged, "iqn.2026-11.io.labbot:lab0")
    assert other is not None and other.acls == {"iqn.1994-05.com.redhat:0a1b2c3d4e5f": [0]}  # untouched


async def test_a_second_ensure_changes_nothing() -> None:
    run = Transcript([
        HAVE_TARGETCLI,
        SIZE,
        (DUMP_COMMAND, ok(CONFIGURED)),
        (READ_SAVED, ok(lio_config.render(lio_config.parse(CONFIGURED)))),
        (ENABLE, ok()),
        (firewall.open_command(3260, "labbot-lab1"), ok("opened-by-labbot\n")),
        SIZE,
    ])
    await TargetcliBackend(run).ensure(SPEC)
    run.finished()
    assert not any(c.startswith("targetcli ") for c in run.commands)


async def test_drift_is_repaired_demo_mode_intruder_mapping_and_portal() -> None:
    repaired = json.loads(CONFIGURED)
    run = Transcript([
        HAVE_TARGETCLI,
        SIZE,
        (DUMP_COMMAND, ok(DRIFTED)),
        (f"targetcli {TPG} set attribute generate_node_acls=0", ok()),
        (f"targetcli {TPG}/acls delete iqn.1994-05.com.redhat:intruder", ok("Deleted Node ACL.")),
        (f"targetcli {TPG}/acls/{INITIATOR} create mapped_lun=0 tpg_lun_or_backstore=lun0", ok()),
        (f"targetcli {TPG}/portals create 198.19.0.10 3260", ok("Created network portal 198.19.0.10:3260.")),
        (DUMP_COMMAND, ok(CONFIGURED)),
        (READ_SAVED, fail("cat: /etc/target/saveconfig.json: No such file or directory")),
        (writes_saved(lio_config.merge_lab(lio_config.empty(), repaired, IQN, "labbot-lab1")), ok()),
        (ENABLE, ok()),
        (firewall.open_command(3260, "labbot-lab1"), ok("already-open\n")),
        SIZE,
    ])
    await TargetcliBackend(run).ensure(SPEC)
    run.finished()


async def test_refusals() -> None:
    missing = Transcript([("command -v targetcli", fail(""))])
    with pytest.raises(IscsiError, match="targetcli is not installed on VM1"):
        await TargetcliBackend(missing).ensure(SPEC)
    other_disk = Transcript([HAVE_TARGETCLI, SIZE, (DUMP_COMMAND, ok(CONFIGURED.replace(DEVICE, "/dev/vdc")))])
    with pytest.raises(IscsiError, match="backstore labbot-lab1 already uses /dev/vdc"):
        await TargetcliBackend(other_disk).ensure(SPEC)
    no_module = fail("ModuleNotFoundError: No module named 'rtslib_fb'")
    no_rtslib = Transcript([HAVE_TARGETCLI, SIZE, (DUMP_COMMAND, no_module)])
    with pytest.raises(IscsiError, match=r"reading the LIO configuration \(rtslib-fb\) failed.*rtslib_fb"):
        await TargetcliBackend(no_rtslib).ensure(SPEC)
    lying = Transcript([
        HAVE_TARGETCLI, SIZE, (DUMP_COMMAND, ok(CREATED)),
        (f"targetcli {TPG}/luns create /backstores/block/labbot-lab1", ok()),
        (f"targetcli {TPG}/acls create {INITIATOR}", ok()),
        (DUMP_COMMAND, ok(CREATED)),  # the changes did not take
    ])
    with pytest.raises(IscsiError, match="not configured as asked"):
        await TargetcliBackend(lying).ensure(SPEC)


async def test_describe_reads_the_live_configuration() -> None:
    run = Transcript([(DUMP_COMMAND, ok(CONFIGURED)), SIZE])
    info = await TargetcliBackend(run).describe(IQN)
    assert info is not None and info.wwid == vpd.lio_wwid(SERIAL) and info.lun == 0
    assert await TargetcliBackend(Transcript([(DUMP_COMMAND, ok(OTHER))])).describe(IQN) is None


async def test_teardown_deletes_this_lab_and_keeps_the_other() -> None:
    saved = lio_config.parse(CONFIGURED)
    run = Transcript([
        HAVE_TARGETCLI,
        (DUMP_COMMAND, ok(CONFIGURED)),
        (f"targetcli /iscsi delete {IQN}", ok("Deleted Target.")),
        ("targetcli /backstores/block delete labbot-lab1", ok("Deleted storage object.")),
        (READ_SAVED, ok(lio_config.render(saved))),
        (writes_saved(lio_config.parse(OTHER)), ok()),
        (firewall.close_command("labbot-lab1"), ok("still-used 3260\n")),
    ])
    await TargetcliBackend(run).teardown(IQN)
    run.finished()
    nothing_left = Transcript([
        HAVE_TARGETCLI, (DUMP_COMMAND, ok(OTHER)), (READ_SAVED, ok(OTHER)),
        (firewall.close_command("labbot-lab1"), ok("")),
    ])
    await TargetcliBackend(nothing_left).teardown(IQN)
    nothing_left.finished()


def test_merge_and_remove_are_inverse_for_one_lab() -> None:
    other, configured = lio_config.parse(OTHER), lio_config.parse(CONFIGURED)
    merged = lio_config.merge_lab(other, configured, IQN, "labbot-lab1")
    assert lio_config.render(merged) == lio_config.render(configured)
    assert lio_config.remove_lab(merged, IQN, "labbot-lab1") == other
    assert lio_config.merge_lab(merged, configured, IQN, "labbot-lab1") == merged  # idempotent
    assert lio_config.parse("") == lio_config.empty()
    with pytest.raises(ValueError):
        lio_config.parse("[]")


CHAP_SPEC = TargetSpec(iqn=IQN, device=DEVICE, initiator_iqn=INITIATOR, portal_ip="198.19.0.10", port=3260,
                       chap_user="labbot-lab1", chap_secret=SecretStr("S3cretS3cret99"))


def _with_chap(dump: str, secret: str = "S3cretS3cret99") -> str:
    """``dump`` with the lab's TPG requiring CHAP and the ACL holding the credentials, as rtslib dumps them."""
    config = lio_config.parse(dump)
    target = next(t for t in config["targets"] if t["wwn"] == IQN)
    tpg = target["tpgs"][0]
    tpg.setdefault("attributes", {})["authentication"] = 1
    for acl in tpg["node_acls"]:
        acl.update(chap_userid="labbot-lab1", chap_password=secret)
    return json.dumps(config)


async def test_chap_is_set_on_the_acl_and_required_on_the_tpg_then_nothing_more() -> None:
    chap = _with_chap(CONFIGURED)
    run = Transcript([
        HAVE_TARGETCLI,
        SIZE,
        (DUMP_COMMAND, ok(CONFIGURED)),
        (f"targetcli {TPG}/acls/{INITIATOR} set auth userid=labbot-lab1 password=S3cretS3cret99", ok("Parameter")),
        (f"targetcli {TPG} set attribute authentication=1", ok("Parameter authentication is now '1'.")),
        (DUMP_COMMAND, ok(chap)),
        (READ_SAVED, ok(lio_config.render(lio_config.parse(CONFIGURED)))),
        (writes_saved(lio_config.parse(chap)), ok()),
        (ENABLE, ok()),
        (firewall.open_command(3260, "labbot-lab1"), ok("opened-by-labbot\n")),
        SIZE,
    ])
    await TargetcliBackend(run).ensure(CHAP_SPEC)
    run.finished()
    target = lio_config.find_target(lio_config.parse(chap), IQN)
    assert target is not None and target.authentication and target.chap == {INITIATOR: ("labbot-lab1",
                                                                                         "S3cretS3cret99")}
    again = Transcript([
        HAVE_TARGETCLI,
        SIZE,
        (DUMP_COMMAND, ok(chap)),
        (READ_SAVED, ok(lio_config.render(lio_config.parse(chap)))),
        (ENABLE, ok()),
        (firewall.open_command(3260, "labbot-lab1"), ok("opened-by-labbot\n")),
        SIZE,
    ])
    await TargetcliBackend(again).ensure(CHAP_SPEC)
    again.finished()


async def test_a_chap_setting_that_did_not_stick_is_an_error() -> None:
    run = Transcript([
        HAVE_TARGETCLI,
        SIZE,
        (DUMP_COMMAND, ok(_with_chap(CONFIGURED, secret="OldOldOldOld11"))),
        (f"targetcli {TPG}/acls/{INITIATOR} set auth userid=labbot-lab1 password=S3cretS3cret99", ok()),
        (DUMP_COMMAND, ok(_with_chap(CONFIGURED, secret="OldOldOldOld11"))),  # exit 0, yet unchanged
    ])
    with pytest.raises(IscsiError, match="does not require the lab's CHAP login"):
        await TargetcliBackend(run).ensure(CHAP_SPEC)
    run.finished()
