"""A real iSCSI discovery from the host this runs on (VM2, for the nested simulator): targets, LUNs, wwids.

``iscsi-ls -s`` (libiscsi) does the SendTargets discovery and lists each target's LUNs, logging in with this
host's initiator name, so the target's ACL decides what is seen, exactly as for ZStack's own discovery. For
each disk LUN the raw VPD page 0x83 is then read (``sandbox.iscsi_probe``) and turned into the wwid Linux's
``scsi_id`` would print (``services.iscsi.vpd``), which is what the SharedBlock candidate list carries.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from sandbox import system
from sandbox.iscsi_probe import ProbeError, probe_lun
from sandbox.system import SandboxError
from sandbox.zstack_sim.hooks import LunFound, TargetFound
from services import shell
from services.iscsi import vpd
from services.iscsi.base import CHAP_SECRET, CHAP_USER
from services.iscsi.initiator import INITIATOR_FILE, parse_initiator_name

log = logging.getLogger(__name__)

_TARGET = re.compile(r"^Target:(\S+)\s+Portal:(\S+)$")
_LUN = re.compile(r"^Lun:(\d+)\s+Type:(\S+)")
# tgtd ends a discovery session at once when it has no target at all; libiscsi then gives up with this.
# (A closed port is "Connection refused" instead, which stays an error.)
_NOTHING_TO_DISCOVER = "Can not reconnect right now"


def parse_iscsi_ls(text: str) -> list[tuple[str, list[tuple[int, str]]]]:
    """``iscsi-ls -s`` output as [(target IQN, [(LUN, SCSI type), ...])], each target once."""
    targets: dict[str, list[tuple[int, str]]] = {}
    current: list[tuple[int, str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if match := _TARGET.match(line):
            iqn = match.group(1)
            first_time = iqn not in targets
            targets.setdefault(iqn, [])
            current = targets[iqn] if first_time else None  # a second portal lists the same LUNs again
        elif (match := _LUN.match(line)) and current is not None:
            current.append((int(match.group(1)), match.group(2)))
    return list(targets.items())


def local_initiator_name(path: Path = Path(INITIATOR_FILE)) -> str:
    """This host's initiator name (VM2's private /etc/iscsi/initiatorname.iscsi in the sandbox)."""
    try:
        return parse_initiator_name(path.read_text())
    except OSError as err:
        raise SandboxError(f"cannot read {path}: {err.strerror}; is this running inside a sandbox VM?") from None


async def discover(ip: str, port: int, *, initiator: str, timeout: float = 15,  # noqa: ASYNC109
                   chap: tuple[str, str] | None = None) -> list[TargetFound]:
    """Discover the targets ``initiator`` may see on ``ip:port`` and identify their disk LUNs; with ``chap``
    (user, secret) every login authenticates with CHAP (libiscsi's ``iscsi://user%secret@host`` form)."""
    credentials = ""
    if chap is not None:
        user, secret = chap
        if not CHAP_USER.fullmatch(user) or not CHAP_SECRET.fullmatch(secret):
            raise SandboxError("CHAP credentials must be a plain user name and a 12-16 character alphanumeric secret")
        credentials = f"{user}%{secret}@"
    portal = f"iscsi://{credentials}{shell.ipv4(ip)}:{shell.port(port)}"
    result = await system.run("iscsi-ls", "-s", "-i", shell.iqn(initiator), portal, check=False, timeout=timeout)
    if result.returncode != 0 and _NOTHING_TO_DISCOVER in result.stderr + result.stdout:
        log.info("iSCSI discovery of %s:%d: the portal has no targets at all", ip, port)
        return []
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-300:]
        if chap is not None:
            output = output.replace(chap[1], "***")
        raise SandboxError(f"iSCSI discovery of {ip}:{port} failed: {output}")
    found = []
    for iqn, luns in parse_iscsi_ls(result.stdout):
        identified = []
        for lun, kind in luns:
            if kind != "DIRECT_ACCESS":
                continue  # tgt's LUN 0 is a controller, not a disk
            try:
                probe = await probe_lun(ip, port, iqn, lun, initiator, timeout, chap=chap)
            except (ProbeError, OSError, TimeoutError) as err:
                raise SandboxError(f"cannot identify LUN {lun} of {iqn} on {ip}:{port}: {err}") from None
            wwid = vpd.wwid_from_page83(probe.page83)
            if wwid is None:
                log.warning("LUN %d of %s has no usable designator in VPD 0x83; skipped", lun, iqn)
                continue
            identified.append(
                LunFound(lun_id=lun, wwid=wwid, size=probe.size_bytes, vendor=probe.vendor, model=probe.product,
                         serial=probe.serial)
            )
        found.append(TargetFound(iqn=iqn, luns=identified))
    log.info("iSCSI discovery of %s:%d as %s: %s", ip, port, initiator, [(t.iqn, len(t.luns)) for t in found])
    return found
