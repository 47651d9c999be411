"""What an iSCSI backend does for a lab, independent of the target software on VM1.

``ensure(spec)`` converges VM1 to exactly one target for the lab: one LUN on the data disk, an ACL that admits
only VM2's initiator, a portal on the port, persistence across reboots, and the firewall opened where
``firewalld`` runs. It reads the current state first, so running it again changes nothing. ``teardown(iqn)``
removes exactly what ``ensure`` made for that target and nothing else. ``describe(iqn)`` reports the target as
it is, including the LUN's wwid (what ``scsi_id`` on VM2 will print; see ``services.iscsi.vpd``).

Backends run shell commands through a ``Runner`` (``services.ssh.result``): SSH in production, a recorded
transcript in tests.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import SecretStr

from services import shell
from services.errors import ExternalError
from services.i18n import _
from services.ssh.result import CommandResult, Runner

log = logging.getLogger(__name__)

CHAP_USER = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# RFC 7143 wants at least 12 bytes; Microsoft's initiator at most 16. Alphanumerics need no quoting anywhere.
CHAP_SECRET = re.compile(r"[A-Za-z0-9]{12,16}")


class IscsiError(ExternalError):
    """Configuring or reading the iSCSI target on VM1 failed."""

    system = "iscsi"


@dataclass(frozen=True)
class TargetSpec:
    """The target a lab needs: name, backing device, the one initiator allowed in, and where to listen."""

    iqn: str
    device: str
    initiator_iqn: str
    portal_ip: str
    port: int = 3260
    # One-way CHAP: the initiator must also log in with this user name and secret (None: the ACL alone).
    chap_user: str | None = None
    chap_secret: SecretStr | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        shell.iqn(self.iqn)
        shell.device_path(self.device)
        shell.iqn(self.initiator_iqn)
        shell.ipv4(self.portal_ip)
        shell.port(self.port)
        if (self.chap_user is None) != (self.chap_secret is None):
            raise ValueError(_("CHAP needs both a user name and a secret"))
        if self.chap_user is not None and not CHAP_USER.fullmatch(self.chap_user):
            raise ValueError(
                _("CHAP user name {value!r} must be 1-64 of A-Z a-z 0-9 . _ : -").format(value=self.chap_user[:40])
            )
        if self.chap_secret is not None and not CHAP_SECRET.fullmatch(self.chap_secret.get_secret_value()):
            raise ValueError(_("a CHAP secret must be 12-16 letters and digits (what every initiator accepts)"))


@dataclass(frozen=True)
class TargetInfo:
    """A configured target as the lab record stores it: IQN, LUN number, wwid, size and unit serial."""

    iqn: str
    lun: int
    wwid: str
    size_bytes: int
    serial: str


@dataclass(frozen=True)
class Export:
    """One LUN a target on VM1 exports now, whoever configured it (labbot, or a student by hand).

    ``initiators`` are the ACL's initiator names; ``open_to_all`` is set where the target admits any initiator
    (tgt's ``ALL``, LIO's ``generate_node_acls``).
    """

    iqn: str
    lun: int
    wwid: str
    backing: str
    initiators: tuple[str, ...]
    open_to_all: bool
    portals: tuple[tuple[str, int], ...]

    def admits(self, initiator: str) -> bool:
        """Whether the ACL lets ``initiator`` log in and see this LUN."""
        return self.open_to_all or initiator in self.initiators

    def listens_on(self, address: str, port: int) -> bool:
        """Whether a portal of the target serves ``address:port`` (a wildcard portal serves every address)."""
        return any(p == port and a in {address, "0.0.0.0", "[::]", "::"} for a, p in self.portals)  # noqa: S104


class IscsiBackend(Protocol):
    """One target-software family on VM1 (``tgt`` or ``targetcli``/LIO)."""

    async def ensure(self, spec: TargetSpec) -> TargetInfo:
        """Converge VM1 to the wanted target; idempotent."""

    async def teardown(self, iqn: str) -> None:
        """Remove the target and everything ``ensure`` made for it; a missing target is not an error."""

    async def describe(self, iqn: str) -> TargetInfo | None:
        """The target as configured now, or None if it does not exist."""

    async def exports(self) -> list[Export]:
        """Every disk LUN of every target on VM1, read only (the exercise checks read a student's work)."""


def checked(result: CommandResult, what: str) -> CommandResult:
    """``result`` if it succeeded, else an IscsiError saying what failed with the command's stderr tail."""
    if not result.ok:
        detail = (result.stderr.strip() or result.stdout.strip() or "(no output)")[-600:]
        raise IscsiError(
            _("{what} failed on VM1 (exit {exit_status}): {detail}").format(
                what=what, exit_status=result.exit_status, detail=detail
            )
        )
    return result


async def device_size(run: Runner, device: str) -> int:
    """Size in bytes of the block device or backing file ``device`` on VM1 (fails clearly if it is missing)."""
    quoted = shell.quote(device)
    result = checked(
        await run(f"if [ -b {quoted} ]; then blockdev --getsize64 {quoted}; else stat -L -c %s {quoted}; fi"),
        f"reading the size of {device}",
    )
    try:
        return int(result.stdout.strip())
    except ValueError:
        raise IscsiError(
            _("unexpected size of {device}: {value!r}").format(device=device, value=result.stdout.strip()[:80])
        ) from None
