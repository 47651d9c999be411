"""A real OpenSSH ``sshd`` for one sandbox VM: host key, authorized keys and config, made the way cloud-init would.

The host key is generated once per VM and kept across "reboots" (stop/start), like a real VM's disk, so a
pinned key stays valid; ``regenerate_host_key`` simulates a rebuilt (or impostor) VM for the pinning tests.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import asyncssh

log = logging.getLogger(__name__)

HOST_KEY = "ssh_host_ed25519_key"
AUTHORIZED_KEYS = "authorized_keys"
CONFIG = "sshd_config"


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def ensure_host_key(ssh_dir: Path) -> str:
    """Create the VM's Ed25519 host key if it has none; return the public key line."""
    ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = ssh_dir / HOST_KEY
    if not private.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="sandbox-host")
        _write_private(private, key.export_private_key("openssh"))
        (ssh_dir / f"{HOST_KEY}.pub").write_bytes(key.export_public_key("openssh"))
    return (ssh_dir / f"{HOST_KEY}.pub").read_text().strip()


def regenerate_host_key(ssh_dir: Path) -> str:
    """Replace the host key (as a reinstalled VM would); sshd must be restarted to use it."""
    (ssh_dir / HOST_KEY).unlink(missing_ok=True)
    return ensure_host_key(ssh_dir)


def write_authorized_keys(ssh_dir: Path, public_keys: list[str]) -> None:
    """The keys that may log in (labbot's per-lab key, from the VM's ``sshkey::`` tag)."""
    lines = [key.strip() for key in public_keys if key.strip()]
    for line in lines:
        asyncssh.import_public_key(line)  # refuse garbage before sshd silently ignores it
    path = ssh_dir / AUTHORIZED_KEYS
    path.write_text("".join(f"{line}\n" for line in lines))
    path.chmod(0o600)


def write_config(ssh_dir: Path, *, listen: str = "0.0.0.0", port: int = 22, passwords: bool = False) -> Path:  # noqa: S104
    """An sshd_config using only files in ``ssh_dir`` (the system's /etc/ssh is left alone)."""
    config = ssh_dir / CONFIG
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {listen}",
                f"Port {port}",
                f"HostKey {ssh_dir / HOST_KEY}",
                f"AuthorizedKeysFile {ssh_dir / AUTHORIZED_KEYS}",
                "PidFile none",
                "UsePAM no",
                "StrictModes no",  # the key files live under the sandbox dir, not in ~/.ssh
                "PermitRootLogin yes" if passwords else "PermitRootLogin prohibit-password",
                f"PasswordAuthentication {'yes' if passwords else 'no'}",
                "KbdInteractiveAuthentication no",
                "AllowTcpForwarding yes",  # the jump host forwards to VM2
                "GatewayPorts no",
                "X11Forwarding no",
                "PrintMotd no",
                "ClientAliveInterval 15",
                "LogLevel INFO",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    return config
