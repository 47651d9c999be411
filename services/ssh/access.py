"""What a person types to reach a lab (the ``/lab access`` content): plain OpenSSH commands through VM1.

VM2 has no public address. People reach it like labbot does: ``ssh -J`` through VM1, and the ZStack UI (port
5000) and API (8080) by local forwarding through VM1 (VM1 reaches VM2 on the lab's VPC). Someone with a browser
on the jump host itself can open VM2's UI address directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services import shell
from services.i18n import _

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccessInfo:
    """Copy-paste commands and URLs for one lab."""

    ssh_vm1: str
    ssh_vm2: str
    ui_tunnel: str
    ui_url: str
    api_tunnel: str
    api_url: str
    ui_url_on_vm1: str  # for a browser running on the jump host itself

    def lines(self) -> list[tuple[str, str]]:
        """(label, text) pairs in the order a person needs them."""
        return [
            (_("SSH to VM1 (jump host)"), self.ssh_vm1),
            (_("SSH to VM2 through VM1"), self.ssh_vm2),
            (_("Open a tunnel to the ZStack UI"), self.ui_tunnel),
            (_("then browse"), self.ui_url),
            (_("Tunnel to the ZStack API"), self.api_tunnel),
            (_("API base URL"), self.api_url),
            (_("Browser on VM1 itself"), self.ui_url_on_vm1),
        ]


def access_commands(
    vm1_public_ip: str,
    vm1_port: int,
    vm2_ip: str,
    username: str,
    ui_port: int = 5000,
    api_port: int = 8080,
) -> AccessInfo:
    """The exact ``ssh``/``ssh -J``/``ssh -L`` commands to reach VM1, VM2 and VM2's UI and API through VM1.

    The person's key (or the lab's root password) is picked up by their ssh as usual; ``-i`` is deliberately
    not offered because ``ssh -J`` does not pass it on to the jump connection.
    """
    shell.ipv4(vm1_public_ip)
    shell.ipv4(vm2_ip)
    shell.port(vm1_port)
    shell.port(ui_port)
    shell.port(api_port)
    user = shell.username(username)
    vm1_opt = "" if vm1_port == 22 else f" -p {vm1_port}"
    jump = f"{user}@{vm1_public_ip}" + ("" if vm1_port == 22 else f":{vm1_port}")
    vm1 = f"{user}@{vm1_public_ip}"
    return AccessInfo(
        ssh_vm1=f"ssh{vm1_opt} {vm1}",
        ssh_vm2=f"ssh -J {jump} {user}@{vm2_ip}",
        ui_tunnel=f"ssh{vm1_opt} -N -L {ui_port}:{vm2_ip}:{ui_port} {vm1}",
        ui_url=f"http://localhost:{ui_port}",
        api_tunnel=f"ssh{vm1_opt} -N -L {api_port}:{vm2_ip}:{api_port} {vm1}",
        api_url=f"http://localhost:{api_port}/zstack/v1",
        ui_url_on_vm1=f"http://{vm2_ip}:{ui_port}",
    )
