"""Snapshot files for rendered Block Kit: ``LABBOT_UPDATE_SNAPSHOTS=1 pytest tests/slack`` rewrites them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DIR = Path(__file__).parent / "snapshots"


def assert_snapshot(name: str, value: Any) -> None:
    """Compare ``value`` with the stored snapshot ``name`` (JSON), or store it when updating."""
    path = DIR / f"{name}.json"
    rendered = json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("LABBOT_UPDATE_SNAPSHOTS") or not path.exists():
        if os.environ.get("CI") and not path.exists():
            raise AssertionError(f"snapshot {path} is missing; generate it locally and commit it")
        path.write_text(rendered, encoding="utf-8")
        return
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(rendered), f"snapshot {name} changed"
