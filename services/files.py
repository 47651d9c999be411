"""Local files that hold secrets or lab data: the SQLite database (ciphertexts, pinned host keys) and the state
directory (packet captures): readable by labbot's user only (0600 files, 0700 directories), whatever the umask."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) a directory only labbot's user can enter; tighten it if it exists."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    for created in missing:
        os.chmod(created, PRIVATE_DIR)  # mkdir's mode is masked by the umask
    os.chmod(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with 0600 if it is missing, else tighten it to 0600 (SQLite gives its -wal and
    -shm files the database file's permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    os.close(fd)
    os.chmod(path, PRIVATE_FILE)
    return path


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite+aiosqlite:///…`` URL (None for an in-memory database)."""
    rest = url.split(":///", 1)[1] if ":///" in url else ""
    path = rest.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)
