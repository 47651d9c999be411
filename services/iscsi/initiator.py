"""VM2's iSCSI initiator name: the ACL on VM1's target admits exactly this name."""

from __future__ import annotations

import logging

from services import shell
from services.iscsi.base import IscsiError
from services.ssh.result import Runner

log = logging.getLogger(__name__)

INITIATOR_FILE = "/etc/iscsi/initiatorname.iscsi"


def parse_initiator_name(text: str) -> str:
    """The ``InitiatorName=`` value of an initiatorname.iscsi file (comments and blanks ignored)."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("InitiatorName="):
            return shell.iqn(line.split("=", 1)[1].strip())
    raise IscsiError(f"{INITIATOR_FILE} has no InitiatorName= line")


async def read_initiator_name(run: Runner) -> str:
    """Read VM2's initiator name (``run`` executes on VM2)."""
    result = await run(f"cat {INITIATOR_FILE}")
    if not result.ok:
        raise IscsiError(
            f"cannot read {INITIATOR_FILE} on VM2 ({result.stderr.strip()[-200:]}); "
            "is the iSCSI initiator (iscsi-initiator-utils / open-iscsi) installed?"
        )
    return parse_initiator_name(result.stdout)
