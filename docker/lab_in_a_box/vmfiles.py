"""What cloud-init would leave on a lab-in-a-box VM container, and the small process helpers the agent uses.

Files go under the paths the agent is given (the container's ``/etc`` and ``/var/lib/labbot-vm``, or a test's
temporary root), never elsewhere, except sshd's compiled-in ``/run/sshd``.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import asyncssh

from sandbox.vm import CPUINFO_FILE, cpuinfo

log = logging.getLogger(__name__)

INITIATOR_PREFIX = "iqn.2026-11.io.labbot.sandbox"


def write_vm_files(plan: dict[str, Any], *, etc: Path, ssh_dir: Path, role: str) -> None:
    """sshd's host key, keys and config, the iSCSI initiator name, and the env the fake installer reads."""
    write_ssh_files(ssh_dir, plan.get("ssh_public_keys") or [], passwords=plan.get("root_password") is not None,
                    role=role)
    vm_uuid = str(plan["vm_uuid"])
    (etc / "iscsi").mkdir(parents=True, exist_ok=True)
    (etc / "iscsi" / "initiatorname.iscsi").write_text(f"InitiatorName={INITIATOR_PREFIX}:{vm_uuid[:8]}\n")
    nested = [sys.executable, "-m", "bot.cli", "sim", "zstack", "--role", "nested", "--host", "0.0.0.0",  # noqa: S104
              "--port", "8080", "--hooks", "sandbox"]
    env = {"LABBOT_SANDBOX_VM": vm_uuid, "LABBOT_PYTHON": sys.executable, "LABBOT_NESTED_SIM": shlex.join(nested)}
    # A container shares the host's /proc/cpuinfo: what the VM's CPU mode shows goes where the nested
    # simulator's hooks look first (sandbox.hooks.NestedSandboxHooks).
    host_cpuinfo = Path("/proc/cpuinfo").read_text()
    passes_vmx = bool(plan.get("nested_virtualization"))
    (etc / CPUINFO_FILE).write_text(cpuinfo(host_cpuinfo, nested_virtualization=passes_vmx))
    (etc / "labbot-sandbox.env").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    # sshd's privilege-separation directory is compiled in (not under our root); a fresh /run lacks it.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)


def write_ssh_files(ssh_dir: Path, keys: list[str], *, passwords: bool, role: str) -> None:
    """A host key (kept until the VM is expunged), the lab's authorized keys and an sshd_config using them."""
    ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    host_key = ssh_dir / "ssh_host_ed25519_key"
    if not host_key.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"lab-in-a-box-{role}")
        host_key.write_bytes(key.export_private_key("openssh"))
        host_key.chmod(0o600)
    lines = [k.strip() for k in keys if k.strip()]
    for line in lines:
        asyncssh.import_public_key(line)  # refuse garbage before sshd silently ignores it
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text("".join(f"{line}\n" for line in lines))
    authorized.chmod(0o600)
    (ssh_dir / "sshd_config").write_text("\n".join([
        "Port 22", f"HostKey {host_key}", f"AuthorizedKeysFile {authorized}", "PidFile none", "UsePAM no",
        "StrictModes no", f"PermitRootLogin {'yes' if passwords else 'prohibit-password'}",
        f"PasswordAuthentication {'yes' if passwords else 'no'}", "KbdInteractiveAuthentication no",
        "AllowTcpForwarding yes", "X11Forwarding no", "PrintMotd no", "ClientAliveInterval 15",
        "Subsystem sftp internal-sftp", "",
    ]))


async def set_root_password(shadow: Path, password: str) -> None:
    """Give root the plan's password in ``shadow`` (SHA-512 crypt, as cloud-init's chpasswd would)."""
    if not await asyncio.to_thread(shadow.exists):
        log.warning("%s does not exist; root keeps its password", shadow)
        return
    process = await asyncio.create_subprocess_exec(
        "openssl", "passwd", "-6", "-stdin", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    hashed, _ = await process.communicate(password.encode() + b"\n")
    if process.returncode != 0:
        raise RuntimeError("openssl could not hash the root password")
    entries = [line.split(":") for line in (await asyncio.to_thread(shadow.read_text)).splitlines()]
    for fields in entries:
        if fields[0] == "root" and len(fields) > 2:
            fields[1] = hashed.decode().strip()
    await asyncio.to_thread(shadow.write_text, "".join(":".join(fields) + "\n" for fields in entries))


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


async def run_command(*argv: str) -> tuple[int, str]:
    """Run a command (no shell); its exit status and combined output."""
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace")
