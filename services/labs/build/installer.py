"""The ZStack installer on VM2: finding it, and cleaning up after a failed run as a person would.

A ZStack ISO OS keeps the installer under ``/opt/zstack-dvd/<arch>/<release>/zstack-installer.bin``
(zstack-utility ``zstackctl/zstackctl/reset_mini.py`` runs ``/opt/zstack-dvd/x86_64/c76/...``); the profile
names it with a glob. A failed install leaves ``/usr/local/zstack`` and a half-made database behind, and the
installer then refuses the host: "/usr/local/zstack is existing. Please delete it manually before installing
a new ZStack" (zstack-utility ``installation/install.sh``, ``do_check_system``), and "detected existing zstack
database; ... append parameter -D" (``cs_check_zstack_data_exist``). So a retry stops ZStack, deletes the
install root and re-runs with ``-D``.
"""

from __future__ import annotations

import logging

from services import shell
from services.errors import ExternalError
from services.i18n import _
from services.ssh.session import LabSSH

log = logging.getLogger(__name__)

# $@: the patterns, each expanded by the shell (unquoted on purpose; the profile allows no blanks in them).
_FIND = r"""
for pattern in "$@"; do
  for f in $pattern; do
    if [ -f "$f" ]; then echo "found $f"; exit 0; fi
    if [ -e "$f" ]; then echo "tried $f (not a regular file)"; else echo "tried $f (no such file)"; fi
  done
done
exit 3
"""

# $1: the install root. zstack-ctl exists only once the installer got far enough to install it.
_CLEAN = r"""
if command -v zstack-ctl >/dev/null 2>&1; then zstack-ctl stop >/dev/null 2>&1 || true; fi
rm -rf -- "$1" && echo "removed $1"
"""


class InstallerNotFoundError(ExternalError):
    """No ZStack installer where the profile says it is."""


async def find_installer(ssh: LabSSH, patterns: list[str]) -> str:
    """The first regular file the patterns match on VM2; the error names every path tried.

    The patterns come from the profile, which allows only absolute paths of plain characters and glob marks;
    they reach the shell quoted and are expanded there on purpose.
    """
    result = await ssh.run("vm2", shell.sh_c(_FIND, *patterns), timeout=30, check=False)
    lines = result.stdout.splitlines()
    found = [line.removeprefix("found ") for line in lines if line.startswith("found ")]
    if result.exit_status == 0 and found:
        return shell.safe_path(found[0], absolute=True)
    tried = "; ".join(line.removeprefix("tried ") for line in lines if line.startswith("tried ")) or "nothing"
    raise InstallerNotFoundError(
        _(
            "no ZStack installer on VM2: tried {tried}. VM2's image must be a ZStack ISO OS (the installer is "
            "in /opt/zstack-dvd/<arch>/<release>/zstack-installer.bin), or set install.installer in the profile"
        ).format(tried=tried)
    )


async def clean_failed_install(ssh: LabSSH, install_root: str) -> str:
    """Stop what a failed install started and remove its install root; returns what was done."""
    root = shell.safe_path(install_root, absolute=True)
    result = await ssh.run("vm2", shell.sh_c(_CLEAN, root), timeout=300)
    return result.stdout.strip()
