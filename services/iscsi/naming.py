"""Names labbot gives to a lab's iSCSI objects, derived from the lab so that they are stable and unique."""

from __future__ import annotations

import logging
import re

from services import shell

log = logging.getLogger(__name__)


def target_iqn(prefix: str, lab_name: str) -> str:
    """The lab's target IQN, e.g. ``iqn.2026-11.io.labbot:lab1`` from the profile's prefix and the lab name."""
    return shell.iqn(f"{shell.iqn(prefix)}:{shell.lab_name(lab_name)}")


def object_name(iqn: str) -> str:
    """A short name for the target's objects (LIO backstore, tgt config file): ``labbot-<lab>``."""
    suffix = shell.iqn(iqn).rsplit(":", 1)[-1] if ":" in iqn else iqn
    cleaned = re.sub(r"[^a-z0-9-]+", "-", suffix).strip("-")
    return f"labbot-{cleaned}"[:60]
