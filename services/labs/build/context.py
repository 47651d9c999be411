"""Everything a pipeline step needs for one lab: its record, its profile, and its connections.

Steps read the lab fresh from the database and write back through ``update`` (which retries lost optimistic
locks), so two concurrent branches and a person extending the lab never overwrite each other. Remote
connections (SSH through the jump host, the nested ZStack through an SSH tunnel) are opened lazily, reused by
every step of the lab, and closed when the build or destroy ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.profiles import LabProfile
from config.settings import Settings
from services.crypto import SecretBox
from services.errors import StaleWriteError
from services.labs import repository as repo
from services.labs.models import Lab
from services.labs.notifier import Notice, NoticeKind, Notifier
from services.labs.views import lab_view, step_view

log = logging.getLogger(__name__)

_TAIL_CHARS = 4000


class LabContext:
    """Per-lab state shared by the steps of one build or destroy."""

    def __init__(
        self,
        *,
        lab_id: int,
        lab_uuid: str,
        lab_name: str,
        profile: LabProfile,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        notifier: Notifier,
        box: SecretBox,
        connections: Any,
        titles: dict[str, str],
    ) -> None:
        self.lab_id = lab_id
        self.lab_uuid = lab_uuid
        self.lab_name = lab_name
        self.profile = profile
        self.settings = settings
        self.sessions = sessions
        self.notifier = notifier
        self.box = box
        self.connections = connections
        self.titles = titles
        self._write_lock = asyncio.Lock()
        self._progress_at: dict[str, float] = {}

    # --- the lab record ------------------------------------------------------------------------------

    async def lab(self) -> Lab:
        """The lab as it is in the database now."""
        async with self.sessions() as session:
            return await repo.get(session=session, lab_id=self.lab_id)

    async def update(self, **changes: Any) -> Lab:
        """Write fields of the lab, re-reading and retrying if someone else wrote first."""
        return await self._write(lambda lab: changes)

    async def set_nested(self, **ids: str) -> None:
        """Remember uuids of nested ZStack resources by role.

        The merge happens on the row read inside the write: concurrent steps (storage beside network/image)
        each add their roles, and neither may write back a copy read before the other's roles were there.
        """
        await self._write(lambda lab: {"nested_ids": {**(lab.nested_ids or {}), **ids}})

    async def _write(self, changes_for: Callable[[Lab], dict[str, Any]]) -> Lab:
        async with self._write_lock:
            for _ in range(10):
                try:
                    async with self.sessions() as session, session.begin():
                        lab = await repo.get(session=session, lab_id=self.lab_id)
                        for key, value in changes_for(lab).items():
                            setattr(lab, key, value)
                        await repo.save(session=session)
                        return lab
                except StaleWriteError:
                    await asyncio.sleep(0.05)
            raise StaleWriteError(f"could not update lab {self.lab_name}: too much contention")

    def resource_uuid(self, role: str) -> str:
        """The uuid labbot gives the lab's resource ``role`` (deterministic, so a retried create finds it)."""
        return uuidlib.uuid5(uuidlib.UUID(self.lab_uuid), role).hex

    def resource_name(self, role: str) -> str:
        """``labbot-<lab>-<role>``: the name prefix marks what labbot made (the orphan sweep relies on it)."""
        return f"{self.settings.resource_prefix}-{self.lab_name}-{role}"

    @property
    def tag(self) -> str:
        """The user tag on every outer resource of this lab."""
        return f"labbot::lab::{self.lab_uuid}"

    async def secret(self, field: str) -> SecretStr:
        """Decrypt one of the lab's stored secrets (``ssh_private_key_enc`` / ``host_password_enc``)."""
        ciphertext = getattr(await self.lab(), field)
        if not ciphertext:
            raise RuntimeError(f"lab {self.lab_name} has no {field} yet")
        return self.box.decrypt(ciphertext)

    async def chap(self) -> tuple[str, SecretStr] | None:
        """The CHAP user and secret VM2's initiator logs in to VM1's target with, when the profile wants CHAP
        (None for a profile without, or a lab made before labbot kept a secret per lab)."""
        return chap_credentials(await self.lab(), self.profile, self.box)

    # --- progress ------------------------------------------------------------------------------------

    async def progress(self, step: str, text: str, *, min_interval: float = 1.0) -> None:
        """Record and announce the current step's progress, at most once per ``min_interval`` seconds."""
        now = time.monotonic()
        if now - self._progress_at.get(step, 0.0) < min_interval:
            return
        self._progress_at[step] = now
        await self._write_step(step, progress=text[:200])
        await self._announce(NoticeKind.STEP_PROGRESS, step, text)

    async def note(self, step: str, text: str) -> None:
        """Tell the lab's thread (and its audit trail and the step's output) what a step does on its own."""
        async with self.sessions() as session, session.begin():
            lab = await repo.get(session=session, lab_id=self.lab_id)
            await repo.add_event(session=session, lab=lab, actor="labbot", kind="step_note", detail=text[:2000])
        await self.output(step, text + "\n")
        await self._announce(NoticeKind.STEP_NOTE, step, text)

    async def output(self, step: str, text: str) -> None:
        """Append to the step's kept output tail (for `/lab logs`): its last ``_TAIL_CHARS`` characters."""
        async with self.sessions() as session, session.begin():
            row = await repo.get_step(session=session, lab_id=self.lab_id, name=step)
            row.output_tail = ((row.output_tail or "") + text[-_TAIL_CHARS:])[-_TAIL_CHARS:]

    async def output_lines(self, step: str, lines: Sequence[str]) -> None:
        """Append ``lines`` to the step's output tail in one write (a VM's log may bring thousands at once)."""
        kept: list[str] = []
        size = 0
        for line in reversed(lines):  # only the end can be kept: never join more than that
            if size >= _TAIL_CHARS:
                break
            kept.append(line[-_TAIL_CHARS:] + "\n")
            size += len(kept[-1])
        if kept:
            await self.output(step, "".join(reversed(kept)))

    async def _write_step(self, step: str, **changes: Any) -> None:
        async with self.sessions() as session, session.begin():
            row = await repo.get_step(session=session, lab_id=self.lab_id, name=step)
            for key, value in changes.items():
                setattr(row, key, value)

    async def _announce(self, kind: NoticeKind, step: str | None, text: str = "") -> None:
        async with self.sessions() as session:
            lab = await repo.get(session=session, lab_id=self.lab_id)
            steps = await repo.list_steps(session=session, lab_id=self.lab_id)
        view = lab_view(lab, steps, self.titles)
        step_snapshot = next((s for s in view.steps if s.name == step), None)
        await self.notifier.notify(Notice(kind, view, step=step_snapshot, text=text))


__all__ = ["LabContext", "step_view"]


def chap_credentials(lab: Lab, profile: LabProfile, box: SecretBox) -> tuple[str, SecretStr] | None:
    """The CHAP user and secret of a lab's iSCSI target (None without CHAP); the build, health checks and
    packet captures all log in with these."""
    if not profile.iscsi.chap or not lab.chap_secret_enc:
        return None
    # The user name follows the lab's uuid, not its name: a warm-pool lab is renamed when it is handed over,
    # and its target must keep admitting the nested ZStack that logged in before.
    return f"labbot-{lab.uuid[:16]}", box.decrypt(lab.chap_secret_enc)
