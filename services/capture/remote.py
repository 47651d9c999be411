"""The remote half of a capture: tcpdump on VM1 (a detached job with hard limits), traffic from VM2, the fetch.

tcpdump runs like the ZStack installer, as a detached job (``services.ssh.detached``), so a dropped SSH
connection cannot leave it running unbounded: ``timeout`` ends it after the seconds asked for, ``-c`` after the
packets asked for, and ``head -c`` after the byte limit (tcpdump then gets SIGPIPE). ``-U`` writes each packet
as it comes, so what was captured is on disk whichever limit ends it. The fetch reads at most the byte limit
over SFTP, and the job's directory (the pcap with it) is removed from VM1 afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncssh
from pydantic import SecretStr

from services import shell
from services.capture.spec import CaptureSpec
from services.errors import ExternalError
from services.i18n import _
from services.iscsi.base import CHAP_SECRET, CHAP_USER
from services.iscsi.initiator import read_initiator_name
from services.ssh.detached import follow, job_dir, job_status, read_log, reset_job, start_detached
from services.ssh.session import LabSSH

log = logging.getLogger(__name__)

PCAP_NAME = "capture.pcap"
LISTEN_TIMEOUT = 30.0  # seconds for tcpdump to say it is listening (an on-demand install included)
FETCH_TIMEOUT = 120.0

# Installs tcpdump where it is missing: dnf on Rocky/CentOS (the real lab), apt-get on Debian.
_ENSURE_TCPDUMP = r"""
command -v tcpdump >/dev/null 2>&1 && exit 0
if command -v dnf >/dev/null 2>&1; then dnf install -y tcpdump
elif command -v yum >/dev/null 2>&1; then yum install -y tcpdump
elif command -v apt-get >/dev/null 2>&1; then DEBIAN_FRONTEND=noninteractive apt-get install -y tcpdump
else echo "no package manager to install tcpdump with" >&2; exit 3; fi
command -v tcpdump >/dev/null 2>&1
"""

# Traffic for the capture to see, from VM2's initiator (its own IQN, so the target's ACL admits it):
# discovery and login with SendTargets, REPORT LUNS, INQUIRY, READ CAPACITY, then a one-second read burst.
# Only reads: the LUN holds the nested ZStack's SharedBlock storage. $1 initiator, $2 portal, $3 target IQN, $4 LUN,
# $5 libiscsi's CHAP credentials as the URL has them (``user%secret@``, or empty when the lab has no CHAP).
_EXERCISE = r"""
if command -v iscsi-ls >/dev/null 2>&1; then
  timeout 20 iscsi-ls -s -i "$1" "iscsi://$5$2" || exit $?
  timeout 20 iscsi-inq -i "$1" "iscsi://$5$2/$3/$4" >/dev/null || exit $?
  timeout 20 iscsi-readcapacity16 -i "$1" "iscsi://$5$2/$3/$4" >/dev/null || exit $?
  if command -v iscsi-perf >/dev/null 2>&1; then
    timeout 10 iscsi-perf -i "$1" -t 1 -m 1 -b 8 "iscsi://$5$2/$3/$4" >/dev/null 2>&1 || true
  fi
elif command -v iscsiadm >/dev/null 2>&1; then
  timeout 30 iscsiadm -m discovery -t sendtargets -p "$2" || exit $?
  timeout 30 iscsiadm -m session --rescan || true
else
  echo "VM2 has neither libiscsi's tools nor iscsiadm" >&2; exit 3
fi
"""


Exercise = tuple[str, str, int]  # the portal, the target's IQN and the LUN VM2's initiator reads


class CaptureRemoteError(ExternalError):
    """The capture could not be made or fetched on the lab's VMs."""


@dataclass(frozen=True)
class RemoteCapture:
    """What came back from VM1: the pcap bytes (at most the limit) and what tcpdump said."""

    data: bytes
    tcpdump_log: str
    exercised: str | None
    hit_byte_limit: bool


def tcpdump_command(spec: CaptureSpec, *, pcap: str, bpf: str) -> str:
    """The shell text of the capture job (every value validated or quoted)."""
    return (
        f"timeout --signal=INT {int(spec.seconds)} tcpdump -U -n -i any -c {int(spec.packets)} -w - "
        f"{shell.quote(bpf)} | head -c {int(spec.max_bytes)} > {shell.quote(pcap)}"
    )


def bpf_filter(spec: CaptureSpec, *, vm2_ip: str, iscsi_port: int, ui_port: int, api_port: int) -> str:
    """The capture filter: only the flows asked for (VM2's ports on VM2's address)."""
    vm2 = shell.ipv4(vm2_ip)
    parts = {
        "iscsi": f"tcp port {int(iscsi_port)}",
        "ui": f"(host {vm2} and tcp port {int(ui_port)})",
        "api": f"(host {vm2} and tcp port {int(api_port)})",
    }
    return " or ".join(parts[key] for key in spec.flow_keys)


async def capture_on_vm1(ssh: LabSSH, spec: CaptureSpec, *, job: str, bpf: str, exercise: Exercise | None,
                         chap: tuple[str, SecretStr] | None = None) -> RemoteCapture:
    """Run one bounded capture on VM1 (and the traffic on VM2 when ``exercise`` = (portal, target IQN, LUN),
    logging in with the lab's CHAP user and secret when it has them)."""
    setup = await ssh.run("vm1", f"sh -c {shell.quote(_ENSURE_TCPDUMP)}", timeout=300, check=False)
    if not setup.ok:
        raise CaptureRemoteError(
            _("tcpdump is missing on VM1 and could not be installed: {value}").format(
                value=(setup.stderr or setup.stdout).strip()[-300:]
            )
        )
    directory = job_dir(ssh.lab, job)
    pcap = f"{directory}/{PCAP_NAME}"
    await start_detached(ssh, "vm1", job, tcpdump_command(spec, pcap=pcap, bpf=bpf))
    try:
        await _wait_listening(ssh, job)
        exercised = await _exercise(ssh, *exercise, chap=chap) if exercise is not None else None
        text_lines: list[str] = []

        async def keep(line: str) -> None:
            if len(text_lines) < 50:
                text_lines.append(line[:300])

        await follow(ssh, "vm1", job, on_line=keep, poll_interval=1.0, timeout=spec.seconds + 60)
        data = await _fetch(ssh, pcap, spec.max_bytes)
    finally:
        try:
            await reset_job(ssh, "vm1", job)
        except Exception:
            log.warning("could not remove capture job %s on VM1 of %s", job, ssh.lab, exc_info=True)
    return RemoteCapture(
        data=data, tcpdump_log="\n".join(text_lines), exercised=exercised, hit_byte_limit=len(data) >= spec.max_bytes
    )


async def _wait_listening(ssh: LabSSH, job: str) -> None:
    """Wait until tcpdump says it is listening, so the traffic that follows is seen."""
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while True:
        text, _offset = await read_log(ssh, "vm1", job, 0)
        if "listening on" in text:
            return
        if (await job_status(ssh, "vm1", job)).state != "running":
            raise CaptureRemoteError(
                _("tcpdump stopped on VM1: {value}").format(value=text.strip()[-300:] or "no output")
            )
        if time.monotonic() > deadline:
            raise CaptureRemoteError(
                _("tcpdump did not start on VM1: {value}").format(value=text.strip()[-300:] or "no output")
            )
        await asyncio.sleep(0.3)


async def _exercise(ssh: LabSSH, portal: str, target_iqn: str, lun: int, *, chap: tuple[str, SecretStr] | None) -> str:
    """Make iSCSI traffic from VM2's initiator; returns what was done, for the summary."""
    initiator = await read_initiator_name(ssh.runner("vm2", timeout=60))
    auth = ""
    if chap is not None:  # both checked against the target's own rules (services.iscsi.base) before they were set
        user, secret = chap
        if not (CHAP_USER.fullmatch(user) and CHAP_SECRET.fullmatch(secret.get_secret_value())):
            raise CaptureRemoteError(_("the lab's CHAP credentials are not in the form labbot set them"))
        auth = f"{user}%{secret.get_secret_value()}@"
    command = "sh -c " + " ".join(
        shell.quote(part)
        for part in (_EXERCISE, "labbot", shell.iqn(initiator), portal, shell.iqn(target_iqn), int(lun), auth)
    )
    result = await ssh.run("vm2", command, timeout=120, check=False)
    if not result.ok:
        raise CaptureRemoteError(
            _("could not make iSCSI traffic from VM2 (exit {exit_status}): {value}").format(
                exit_status=result.exit_status, value=(result.stderr or result.stdout).strip()[-300:]
            )
        )
    return _("discovery, login, INQUIRY, READ CAPACITY and a one-second read burst from VM2's initiator")


async def _fetch(ssh: LabSSH, path: str, limit: int) -> bytes:
    """The capture file's first ``limit`` bytes, over SFTP."""
    conn = await ssh.connection("vm1")
    try:
        async with asyncio.timeout(FETCH_TIMEOUT), conn.start_sftp_client() as sftp, sftp.open(path, "rb") as remote:
            data: bytes | str = await remote.read(limit)  # "rb": bytes
            return data if isinstance(data, bytes) else data.encode()
    except (asyncssh.SFTPError, OSError, TimeoutError) as err:
        raise CaptureRemoteError(_("could not fetch the capture from VM1: {err}").format(err=err)) from None
