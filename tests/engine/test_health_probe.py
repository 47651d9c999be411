"""How the health check reads VM2's answer about the lab's LUN (the sandbox's iscsi-ls path runs end to end)."""

from __future__ import annotations

import pytest

from services.labs.build.health import CheckFailed, lun_verdict

IQN, WWID = "iqn.2026-11.io.labbot:demo", "36000000035e8712b8f0c49305e5b1616"


def test_a_logged_in_disk_is_seen_by_its_wwid() -> None:
    assert lun_verdict(f"BLOCKDEV {WWID}\n", IQN, WWID) == f"wwid {WWID} is a block device on VM2"


def test_a_discovery_must_list_a_disk_lun_of_the_labs_target() -> None:
    listing = (f"Target:iqn.2026-11.io.labbot:other Portal:198.19.0.10:3260,1\nLun:1 Type:DIRECT_ACCESS\n"
               f"Target:{IQN} Portal:198.19.0.10:3260,1\n"
               "Lun:0 Type:STORAGE_ARRAY_CONTROLLER\nLun:1 Type:DIRECT_ACCESS\n")
    assert lun_verdict(listing, IQN, WWID) == f"LUN 1 of {IQN} seen by VM2's initiator"
    controller_only = f"Target:{IQN} Portal:198.19.0.10:3260,1\nLun:0 Type:STORAGE_ARRAY_CONTROLLER\n"
    with pytest.raises(CheckFailed, match="VM2 does not see a disk LUN"):
        lun_verdict(controller_only, IQN, WWID)
    with pytest.raises(CheckFailed, match="VM2 does not see a disk LUN"):  # another lab's LUN is not ours
        lun_verdict(listing.split("Target:" + IQN)[0], IQN, WWID)


def test_an_open_iscsi_session_to_the_target_counts() -> None:
    sessions = f"tcp: [1] 198.19.0.10:3260,1 {IQN} (non-flash)\n"
    assert lun_verdict(sessions, IQN, WWID) == f"VM2 has a session to {IQN}"
    with pytest.raises(CheckFailed, match="no output"):
        lun_verdict("", IQN, WWID)
