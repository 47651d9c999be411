"""SSH to lab VMs: VM1 directly, VM2 only through VM1 (the jump host).

Public API: ``LabSSH`` and ``HostAddress`` (session), ``CommandResult``/``Runner`` (results), key pairs
(``generate_keypair``, ``load_private_key``), host-key pinning (``HostKeyStore``, ``MemoryHostKeyStore``),
detached jobs (``services.ssh.detached``), and ``access_commands`` for people.
"""

from __future__ import annotations

from services.ssh.access import AccessInfo, access_commands
from services.ssh.errors import (
    HostKeyChangedError,
    SSHAuthError,
    SSHCommandError,
    SSHError,
    SSHOutputLimitError,
    SSHTimeoutError,
    SSHUnreachableError,
)
from services.ssh.hostkeys import HostKeyStore, KeyChangedCallback, MemoryHostKeyStore
from services.ssh.keys import KeyPair, generate_keypair, keypair_from_private, load_private_key, write_private_key
from services.ssh.result import CommandResult, LineCallback, Runner
from services.ssh.session import HostAddress, LabSSH, Target

__all__ = [
    "AccessInfo",
    "CommandResult",
    "HostAddress",
    "HostKeyChangedError",
    "HostKeyStore",
    "KeyChangedCallback",
    "KeyPair",
    "LabSSH",
    "LineCallback",
    "MemoryHostKeyStore",
    "Runner",
    "SSHAuthError",
    "SSHCommandError",
    "SSHError",
    "SSHOutputLimitError",
    "SSHTimeoutError",
    "SSHUnreachableError",
    "Target",
    "access_commands",
    "generate_keypair",
    "keypair_from_private",
    "load_private_key",
    "write_private_key",
]
