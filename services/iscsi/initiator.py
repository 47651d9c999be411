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


# Keeps an initiator name that is already there (iscsid may be using it); otherwise writes ours atomically.
_ENSURE = r"""
f=$1
if [ -s "$f" ] && grep -q '^[[:space:]]*InitiatorName=' "$f"; then cat "$f"; exit 0; fi
mkdir -p "$(dirname "$f")" && printf 'InitiatorName=%s\n' "$2" > "$f.labbot" && mv "$f.labbot" "$f" && cat "$f"
"""


def lab_initiator_name(iqn_prefix: str, lab: str) -> str:
    """The initiator name labbot gives VM2 when it has none: stable for the lab, so a re-run writes the same."""
    return shell.iqn(f"{iqn_prefix}:{shell.identifier(lab)}.vm2")


async def ensure_initiator_name(run: Runner, wanted: str) -> str:
    """VM2's initiator name, writing ``wanted`` first when the file does not exist yet.

    On a fresh ZStack ISO host the file appears only when the KVM host deploy installs iscsi-initiator-utils
    (zstack-utility ``kvmagent/ansible/kvm.py``), long after the target's ACL must name it. That package
    generates a name only when the file is missing (``iscsi-init.service``: ``iscsi-gen-initiatorname``), so the
    name written here is the one the host keeps and ZStack later logs in with.
    """
    script = shell.sh_c(_ENSURE, INITIATOR_FILE, shell.iqn(wanted))
    result = await run(script)
    if not result.ok:
        raise IscsiError(f"cannot write {INITIATOR_FILE} on VM2: {result.stderr.strip()[-200:]}")
    return parse_initiator_name(result.stdout)
