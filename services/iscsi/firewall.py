"""Opening the iSCSI port in firewalld on VM1 (CentOS/Rocky), and closing it again only if labbot opened it.

Where ``firewall-cmd`` is missing or firewalld is not running there is nothing to do. The port is added to both
the runtime and the permanent configuration, without ``--reload`` (a reload would drop other runtime rules). A
marker file per target records that labbot opened it, so teardown closes the port only when no other
labbot target on the host still needs it and never closes a port someone else opened.
"""

from __future__ import annotations

import logging

from services import shell
from services.iscsi.base import checked
from services.ssh.result import Runner

log = logging.getLogger(__name__)

MARKER_DIR = "/var/lib/labbot/iscsi"

# $1 port, $2 marker dir, $3 owner name
_OPEN = r"""
command -v firewall-cmd >/dev/null 2>&1 || { echo no-firewalld; exit 0; }
firewall-cmd --state >/dev/null 2>&1 || { echo firewalld-not-running; exit 0; }
if firewall-cmd --query-port="$1/tcp" >/dev/null 2>&1; then
  [ -e "$2/$3.port-$1" ] && echo opened-by-labbot || echo already-open
  exit 0
fi
firewall-cmd --add-port="$1/tcp" >/dev/null && firewall-cmd --permanent --add-port="$1/tcp" >/dev/null || exit 1
mkdir -p "$2" && touch "$2/$3.port-$1"
echo opened
"""

# $1 marker dir, $2 owner name: close every port labbot opened for the owner, unless another target uses it.
_CLOSE = r"""
for m in "$1/$2".port-*; do
  [ -e "$m" ] || continue
  port=${m##*.port-}
  rm -f "$m"
  if ls "$1"/*.port-"$port" >/dev/null 2>&1; then echo "still-used $port"; continue; fi
  if command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then
    firewall-cmd --remove-port="$port/tcp" >/dev/null; firewall-cmd --permanent --remove-port="$port/tcp" >/dev/null
  fi
  echo "closed $port"
done
exit 0
"""



def open_command(port: int, owner: str) -> str:
    """The command that opens ``port`` for target ``owner`` (see ``open_port``)."""
    return shell.sh_c(_OPEN, shell.port(port), MARKER_DIR, shell.safe_path(owner))


def close_command(owner: str) -> str:
    """The command that closes the ports opened for ``owner`` (see ``close_ports``)."""
    return shell.sh_c(_CLOSE, MARKER_DIR, shell.safe_path(owner))


async def open_port(run: Runner, port: int, owner: str) -> str:
    """Open ``port``/tcp in firewalld if it runs; returns what happened (``opened``, ``already-open`` ...)."""
    outcome = checked(await run(open_command(port, owner)), f"opening port {port} in firewalld").stdout.strip()
    log.info("firewall port %d for %s: %s", port, owner, outcome)
    return outcome


async def close_ports(run: Runner, owner: str) -> str:
    """Close the ports labbot opened for ``owner``, except those another labbot target still needs."""
    result = checked(await run(close_command(owner)), f"closing the iSCSI port in firewalld for {owner}")
    outcome = result.stdout.strip()
    log.info("firewall ports for %s: %s", owner, outcome or "none opened by labbot")
    return outcome
