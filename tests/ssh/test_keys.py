"""Per-lab key pairs: generated, stored with 0600, loaded only when private, never shown."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import asyncssh
import pytest

from services.errors import ConfigError
from services.ssh.keys import fingerprint, generate_keypair, keypair_from_private, load_private_key, write_private_key


def test_generated_pair_matches_and_hides_the_private_key() -> None:
    pair = generate_keypair("labbot@lab1")
    private = asyncssh.import_private_key(pair.private_openssh.get_secret_value())
    assert private.export_public_key("openssh").decode().strip() == pair.public_openssh
    assert pair.public_openssh.startswith("ssh-ed25519 ") and pair.public_openssh.endswith("labbot@lab1")
    assert pair.fingerprint == fingerprint(pair.public_openssh) and pair.fingerprint.startswith("SHA256:")
    shown = repr(pair) + str(pair)
    assert "PRIVATE KEY" not in shown and pair.private_openssh.get_secret_value() not in shown


def test_two_labs_get_different_keys() -> None:
    assert generate_keypair().fingerprint != generate_keypair().fingerprint


def test_written_key_is_0600_and_loads_back(tmp_path: Path) -> None:
    pair = generate_keypair()
    path = tmp_path / "keys" / "lab1"
    write_private_key(path, pair)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(path) == pair


def test_load_refuses_a_key_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "lab1"
    write_private_key(path, generate_keypair())
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match=r"permissions 0644 are too open; run `chmod 600"):
        load_private_key(path)


def test_load_refuses_garbage_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("not a key")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match="not an unencrypted OpenSSH/PEM private key"):
        load_private_key(bad)
    with pytest.raises(ConfigError, match="cannot read it"):
        load_private_key(tmp_path / "missing")


def test_pair_rebuilt_from_stored_private_key() -> None:
    pair = generate_keypair("labbot@lab2")
    assert keypair_from_private(pair.private_openssh) == pair
