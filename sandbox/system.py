"""Running the host tools the sandbox needs (``ip``, ``unshare``, ``sshd``, ``tgtd``) and checking they exist.

All commands are argv lists (no shell) run with asyncio subprocesses; a failure raises ``SandboxError`` with
the command and its stderr, which is what you need when a namespace or link cannot be made.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from services.errors import ConfigError, ExternalError

log = logging.getLogger(__name__)

SSHD = "/usr/sbin/sshd"
TGTD = "/usr/sbin/tgtd"
# What the lab-in-a-box needs on this machine, with the Debian package that provides it.
REQUIRED_TOOLS = {
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    SSHD: "openssh-server",
    TGTD: "tgt",
    "tgtadm": "tgt",
    "iscsi-ls": "libiscsi-bin",
    "iscsi-inq": "libiscsi-bin",
    "iscsi-readcapacity16": "libiscsi-bin",
    "qemu-img": "qemu-utils",  # makes the nested VM's image
}
INSTALL_HINT = "apt-get install -y openssh-server tgt libiscsi-bin iproute2 util-linux qemu-utils"


class SandboxError(ExternalError):
    """A host command of the sandbox failed."""

    system = "sandbox"


class SandboxUnavailableError(ConfigError):
    """This machine cannot run the lab-in-a-box (not root, not Linux, or tools missing)."""


def missing_requirements() -> list[str]:
    """Why the sandbox cannot run here, one reason per item (empty when it can)."""
    problems = []
    if not sys.platform.startswith("linux"):
        return [f"the lab-in-a-box needs Linux network namespaces (this is {sys.platform})"]
    if os.geteuid() != 0:
        problems.append("the lab-in-a-box needs root (network namespaces, bridges, mounts)")
    missing = sorted({f"{tool} ({pkg})" for tool, pkg in REQUIRED_TOOLS.items() if not _exists(tool)})
    if missing:
        problems.append(f"missing tools: {', '.join(missing)}; install with `{INSTALL_HINT}`")
    if not Path("/proc/filesystems").exists() or "overlay" not in Path("/proc/filesystems").read_text():
        problems.append("the kernel has no overlay file system (each VM gets private /etc, /dev, /root, /tmp)")
    return problems


def require_sandbox() -> None:
    """Raise ``SandboxUnavailableError`` naming every missing requirement."""
    problems = missing_requirements()
    if problems:
        raise SandboxUnavailableError("the lab-in-a-box cannot run here: " + "; ".join(problems))


def _exists(tool: str) -> bool:
    return os.access(tool, os.X_OK) if tool.startswith("/") else shutil.which(tool) is not None


@dataclass(frozen=True)
class Completed:
    """A finished host command."""

    returncode: int
    stdout: str
    stderr: str


async def run(
    *argv: str, check: bool = True, stdin: bytes | None = None, timeout: float = 30  # noqa: ASYNC109 - per command
) -> Completed:
    """Run ``argv`` on the host; raise ``SandboxError`` on a non-zero exit when ``check``."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SandboxError(f"`{' '.join(argv)}` did not finish within {timeout:g}s") from None
    result = Completed(process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
    if check and result.returncode != 0:
        raise SandboxError(f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result


async def ip(*args: str, netns: str | None = None, check: bool = True) -> Completed:
    """``ip [-n NETNS] ARGS``."""
    prefix = ("ip", "-n", netns) if netns else ("ip",)
    return await run(*prefix, *args, check=check)


async def list_netns() -> list[str]:
    """Names of all network namespaces (``ip netns list``)."""
    result = await run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


async def list_links() -> list[str]:
    """Names of the host namespace's network links."""
    result = await run("ip", "-o", "link", "show", check=False)
    names = []
    for line in result.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def netns_inode(name: str) -> int | None:
    """The inode that identifies a named network namespace (to find its processes even after the name is gone)."""
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def pids_in_netns(inodes: set[int]) -> list[int]:
    """Every process whose network namespace is one of ``inodes``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                found.append(int(entry))
        except OSError:
            continue  # the process ended while we looked
    return found


def pid_alive(pid: int) -> bool:
    """Whether a process exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
