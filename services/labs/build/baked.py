"""Starting a VM2 made from a baked image (``install: {mode: baked}``): its own identity, then its ZStack.

Instead of installing, the build gives the new VM2 what must be its own: only the lab's SSH key in root's
authorized_keys (cloud-init adds a new instance's key but keeps the image's), a machine-id when the image's is
empty (``bake`` empties it; systemd makes one at boot, this covers a host without it), and ``zstack-ctl
change_ip --ip=<VM2's address>`` when ``management.server.ip`` is another address (zstack-utility ``ChangeIpCmd``
rewrites management.server.ip, CloudBus.serverIp.0, DB.url and /etc/hosts; without it ``zstack-ctl start``
refuses: ``StartCmd.check_mn_ip``, "management.server.ip[…] is not found on any device"). Then ``zstack-ctl
start``; the step waits for the API as after an install. The iSCSI initiator name is written per lab by
``wait_ssh`` (the image has none), and host keys are the new instance's, pinned on first sight.
"""

from __future__ import annotations

import logging
import re

from services import shell
from services.errors import ExternalError
from services.i18n import _
from services.ssh.session import LabSSH

log = logging.getLogger(__name__)

# $1: VM2's address.
_START = r"""
set -e
command -v zstack-ctl >/dev/null 2>&1 || {
  echo "zstack-ctl not found: VM2's image has no ZStack installed (install.mode baked needs a baked image)"; exit 3; }
if [ ! -s /etc/machine-id ]; then
  systemd-machine-id-setup >/dev/null 2>&1 || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > /etc/machine-id
  echo "new machine-id"
fi
current=$(zstack-ctl get_configuration management.server.ip 2>/dev/null || true)
if [ "$current" != "$1" ]; then
  echo "management.server.ip ${current:-(none)} -> $1"
  zstack-ctl change_ip --ip="$1"
fi
zstack-ctl start
"""

# $1: the lab's public key.
_ONLY_LAB_KEY = r"""
umask 077
mkdir -p /root/.ssh
printf '%s\n' "$1" > /root/.ssh/authorized_keys.labbot
mv -f /root/.ssh/authorized_keys.labbot /root/.ssh/authorized_keys
"""

_PUBLIC_KEY = re.compile(r"ssh-(ed25519|rsa) [A-Za-z0-9+/=]{40,2000}( [A-Za-z0-9@._-]{1,100})?")


class BakedStartError(ExternalError):
    """VM2's baked ZStack could not be started."""


async def start_baked_zstack(ssh: LabSSH, *, vm2_ip: str, public_key: str, timeout: float) -> str:  # noqa: ASYNC109
    """Give VM2 (made from a baked image) this lab's identity and start its ZStack; returns what was done."""
    key = public_key.strip()
    if not _PUBLIC_KEY.fullmatch(key):
        raise BakedStartError(_("the lab has no usable SSH public key yet"))
    await ssh.run("vm2", shell.sh_c(_ONLY_LAB_KEY, key), timeout=30)
    result = await ssh.run("vm2", shell.sh_c(_START, shell.ipv4(vm2_ip)), timeout=timeout, check=False)
    output = (result.stdout + result.stderr).strip()[-2000:]
    if result.exit_status != 0:
        raise BakedStartError(
            _("VM2's baked ZStack did not start (exit status {code}): {output}").format(
                code=result.exit_status, output=output[-400:] or _("no output"))
        )
    return output
