"""How a person reaches a lab: the exact commands, and the credentials (shown only privately)."""

from __future__ import annotations

from dataclasses import dataclass

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
        lines = [f"Lab {self.lab.name}: VM1 {self.lab.vm1_public_ip}, VM2 {self.lab.vm2_ip} (only through VM1)"]
        lines += [f"{label}: {text}" for label, text in self.commands.lines()]
        lines.append(f"root password (VM1 and VM2): {mask(self.root_password)}")
        lines.append(f"ZStack UI login: {self.zstack_user} / {mask(self.zstack_password)}")
        return lines
