"""Fixtures for the reliability tests: a fresh PostgreSQL database, the private box and a killable labbot."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest


def soak_rounds(default: int) -> int:
    """``SOAK_ROUNDS`` (``make soak SOAK_ROUNDS=50``), or the default."""
    return max(1, int(os.environ.get("SOAK_ROUNDS", default)))


def soak_seed() -> int:
    """``SOAK_SEED`` replays a soak run (each prints its seed); a fresh random one otherwise."""
    return int(os.environ.get("SOAK_SEED") or random.randrange(1 << 30))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: many-rounds reliability runs; only with `-m soak` (make soak)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak runs take minutes: they run only when asked for by marker (``make soak``), never in ``make test``."""
    if "soak" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="soak run: `make soak` (SOAK_ROUNDS=N) runs it")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)
