"""How a person reaches a lab: the exact commands, and the credentials (shown only privately)."""

from __future__ import annotations

from dataclasses import dataclass

from services.i18n import _
from services.labs.views import LabView
from services.ssh.access import AccessInfo


@dataclass(frozen=True)
class AccessDetails:
    """How a person reaches a lab; holds secrets, so only ever shown privately."""

    lab: LabView
    commands: AccessInfo
    root_password: str
    zstack_user: str
    zstack_password: str

    def lines(self, *, reveal: bool) -> list[str]:
        """Text lines; passwords are masked unless ``reveal`` (private channels only)."""
        mask = (lambda s: s) if reveal else (lambda s: "•" * 8)
        lines = [
            _("Lab {name}: VM1 {vm1_public_ip}, VM2 {vm2_ip} (only through VM1)").format(
                name=self.lab.name, vm1_public_ip=self.lab.vm1_public_ip, vm2_ip=self.lab.vm2_ip
            )
        ]
        lines += [f"{label}: {text}" for label, text in self.commands.lines()]
        lines.append(_("root password (VM1 and VM2): {mask}").format(mask=mask(self.root_password)))
        lines.append(
            _("ZStack UI login: {zstack_user} / {mask}").format(
                zstack_user=self.zstack_user, mask=mask(self.zstack_password)
            )
        )
        return lines
