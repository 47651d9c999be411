"""A real OpenSSH ``sshd`` on 127.0.0.1 for one test module, optionally with its owner's ``ForceCommand``.

Lighter than a lab-in-a-box VM (no namespace, no iSCSI) for tests about what a VM sends back: it runs as root
on this machine, admits only its own generated key, and listens on loopback only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from sandbox import sshd
from sandbox.system import SSHD
from services.ssh import HostAddress, KeyPair, LabSSH, MemoryHostKeyStore, generate_keypair


class LoopbackSSHD:
    """``sshd -D`` on a free loopback port; ``force_command`` (a shell script's text) runs for every session."""

    def __init__(self, base: Path, *, force_command: str | None = None) -> None:
        os.chmod(base, 0o700)
        self.key: KeyPair = generate_keypair("labbot@loopback")
        ssh_dir = base / "ssh"
        sshd.ensure_host_key(ssh_dir)
        sshd.write_authorized_keys(ssh_dir, [self.key.public_openssh])
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = sshd.write_config(ssh_dir, listen="127.0.0.1", port=self.port)
        if force_command is not None:
            script = base / "force-command"
            script.write_text(force_command)
            script.chmod(0o755)
            with config.open("a") as extra:
                extra.write(f"ForceCommand {script}\n")
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.close()
                    raise RuntimeError("the loopback sshd did not start") from None
                time.sleep(0.05)

    def ssh(self, lab: str = "loopback") -> LabSSH:
        """A session whose VM1 is this sshd, and whose VM2 is this sshd again, reached through VM1."""
        address = HostAddress("127.0.0.1", self.port)
        return LabSSH(lab, vm1=address, vm2=address, username="root", key=self.key, host_keys=MemoryHostKeyStore())

    def close(self) -> None:
        """Stop sshd (sessions it forked end with their connections)."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def __enter__(self) -> LoopbackSSHD:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
