"""Everything a pipeline step needs for one lab: its record, its profile, and its connections.

Steps read the lab through ``lab()`` (this build's copy) and write back through ``update`` (conditional on the
lab's version, re-read and retried when lost), so two concurrent branches and a person extending the lab never
overwrite each other. Remote
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
from services.db import utcnow
from services.errors import NotFoundError, StaleWriteError
from services.i18n import _
from services.labs import repository as repo
from services.labs.models import Lab, LabStep, StepState
from services.labs.notifier import Notice, NoticeKind, Notifier
from services.labs.views import lab_view, step_view

log = logging.getLogger(__name__)

_TAIL_CHARS = 4000
FLUSH_SECONDS = 5.0  # how stale `/lab logs` of a running step may be, at most
WRITE_ATTEMPTS = 10


class LabContext:
    """Per-lab state shared by the steps of one build or destroy.

    The context keeps the lab's row and its step rows as this build last read or wrote them: the build is the
    only writer of what its steps read (addresses, uuids, secrets, step states), so reading them again from the
    database would only cost round trips. A write is one conditional UPDATE on its own (no BEGIN/COMMIT): the
    lab's on its version (someone else's write, e.g. an extend, makes it re-read and try again), a step's on its
    lab not being destroyed (the build stops at a step boundary). Output and progress are kept here and written
    at most every ``FLUSH_SECONDS`` and when the step ends, so a chatty installer costs no more than a quiet one.
    """

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
        self._flushed_at: dict[str, float] = {}
        self._unflushed: set[str] = set()
        self._lab: Lab | None = None
        self._steps: dict[str, LabStep] | None = None

    # --- the lab record ------------------------------------------------------------------------------

    async def lab(self) -> Lab:
        """The lab as this build last read or wrote it (read from the database once)."""
        return self._lab if self._lab is not None else await self.refresh()

    async def refresh(self) -> Lab:
        """Read the lab and its steps again (after someone else changed them, e.g. the build's start)."""
        async with self.sessions() as session:
            self._lab = await repo.get(session=session, lab_id=self.lab_id)
            self._steps = {s.name: s for s in await repo.list_steps(session=session, lab_id=self.lab_id)}
        return self._lab

    async def update(self, **changes: Any) -> Lab:
        """Write fields of the lab, re-reading and retrying if someone else wrote first."""
        return await self._write(lambda lab: changes)

    async def set_nested(self, **ids: str) -> None:
        """Remember uuids of nested ZStack resources by role.

        The merge happens on the row the write is conditional on: concurrent steps (storage beside network)
        each add their roles, and neither may write back a copy read before the other's roles were there.
        """
        await self._write(lambda lab: {"nested_ids": {**(lab.nested_ids or {}), **ids}})

    async def _write(self, changes_for: Callable[[Lab], dict[str, Any]]) -> Lab:
        async with self._write_lock:
            lab = await self.lab()
            for _attempt in range(WRITE_ATTEMPTS):
                changes = changes_for(lab)
                if await repo.update_lab(self.sessions, lab_id=self.lab_id, version=lab.version, values=changes):
                    for key, value in changes.items():
                        setattr(lab, key, value)
                    lab.version += 1
                    return lab
                lab = await self.refresh()  # someone else wrote first: decide again on what is there now
            raise StaleWriteError(
                _("could not update lab {lab_name}: too much contention").format(lab_name=self.lab_name)
            )

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
            raise RuntimeError(_("lab {lab_name} has no {field} yet").format(lab_name=self.lab_name, field=field))
        return self.box.decrypt(ciphertext)

    async def chap(self) -> tuple[str, SecretStr] | None:
        """The CHAP user and secret VM2's initiator logs in to VM1's target with, when the profile wants CHAP
        (None for a profile without, or a lab made before labbot kept a secret per lab)."""
        return chap_credentials(await self.lab(), self.profile, self.box)

    # --- steps ---------------------------------------------------------------------------------------

    async def _step(self, name: str) -> LabStep:
        if self._steps is None or name not in self._steps:
            await self.refresh()
        assert self._steps is not None
        if name not in self._steps:
            raise NotFoundError(_("the lab has no step called `{name}`").format(name=name))
        return self._steps[name]

    async def step_started(self, name: str) -> bool:
        """Record an attempt of ``name`` starting; False (nothing written) when the lab is being destroyed."""
        row = await self._step(name)
        now = utcnow()
        if not await repo.start_step(self.sessions, lab_id=self.lab_id, name=name, at=now):
            return False
        row.state, row.attempt, row.started_at = StepState.RUNNING, (row.attempt or 0) + 1, now
        row.finished_at = row.error = row.progress = None
        self._flushed_at[name] = time.monotonic()
        await self.announce(NoticeKind.STEP_STARTED, name)
        return True

    async def step_ended(self, name: str, state: StepState, *, error: str | None = None) -> None:
        """Record the end of ``name``'s attempt (done, failed, or back to pending), with its output tail."""
        row = await self._step(name)
        if error is not None:
            self._append(row, f"FAILED: {error}\n")
            self._unflushed.add(name)
        values: dict[str, Any] = {"state": state, "progress": None}
        if state != StepState.PENDING:
            values["finished_at"] = utcnow()
        if error is not None:
            values["error"] = error[:2000]
        if name in self._unflushed:
            values["output_tail"] = row.output_tail
        await repo.update_step(self.sessions, lab_id=self.lab_id, name=name, values=values)
        self._unflushed.discard(name)
        for key, value in values.items():
            setattr(row, key, value)
        if state == StepState.DONE:
            await self.announce(NoticeKind.STEP_FINISHED, name)
        elif state == StepState.FAILED:
            await self.announce(NoticeKind.STEP_FAILED, name, error or "")

    # --- progress ------------------------------------------------------------------------------------

    async def progress(self, step: str, text: str, *, min_interval: float = 1.0) -> None:
        """Announce the current step's progress, at most once per ``min_interval`` seconds (kept, too)."""
        now = time.monotonic()
        if now - self._progress_at.get(step, 0.0) < min_interval:
            return
        self._progress_at[step] = now
        row = await self._step(step)
        row.progress = text[:200]
        self._unflushed.add(step)
        await self._flush_if_due(step, force=min_interval == 0)
        await self.announce(NoticeKind.STEP_PROGRESS, step, text)

    async def note(self, step: str, text: str) -> None:
        """Tell the lab's thread (and its audit trail and the step's output) what a step does on its own."""
        async with self.sessions() as session, session.begin():
            lab = await repo.get(session=session, lab_id=self.lab_id)
            await repo.add_event(session=session, lab=lab, actor="labbot", kind="step_note", detail=text[:2000])
        await self.output(step, text + "\n")
        await self.announce(NoticeKind.STEP_NOTE, step, text)

    async def output(self, step: str, text: str) -> None:
        """Append to the step's kept output tail (for `/lab logs`): its last ``_TAIL_CHARS`` characters."""
        self._append(await self._step(step), text)
        self._unflushed.add(step)
        await self._flush_if_due(step)

    async def output_lines(self, step: str, lines: Sequence[str]) -> None:
        """Append ``lines`` to the step's output tail (a VM's log may bring thousands at once)."""
        kept: list[str] = []
        size = 0
        for line in reversed(lines):  # only the end can be kept: never join more than that
            if size >= _TAIL_CHARS:
                break
            kept.append(line[-_TAIL_CHARS:] + "\n")
            size += len(kept[-1])
        if kept:
            await self.output(step, "".join(reversed(kept)))

    @staticmethod
    def _append(row: LabStep, text: str) -> None:
        row.output_tail = ((row.output_tail or "") + text[-_TAIL_CHARS:])[-_TAIL_CHARS:]

    async def flush(self, step: str) -> None:
        """Write the step's output tail and progress now, if anything is unwritten."""
        if step in self._unflushed:
            await self._flush_if_due(step, force=True)

    async def _flush_if_due(self, step: str, *, force: bool = False) -> None:
        """Write the step's output tail and progress if the last write is ``FLUSH_SECONDS`` old (or forced)."""
        now = time.monotonic()
        if not force and now - self._flushed_at.get(step, 0.0) < FLUSH_SECONDS:
            return
        row = await self._step(step)
        self._flushed_at[step] = now
        self._unflushed.discard(step)
        await repo.update_step(
            self.sessions,
            lab_id=self.lab_id,
            name=step,
            values={"output_tail": row.output_tail, "progress": row.progress},
        )

    async def announce(self, kind: NoticeKind, step: str | None, text: str = "") -> None:
        """Tell the notifier about ``step`` (or the lab), with the lab as this build knows it."""
        lab = await self.lab()
        assert self._steps is not None
        view = lab_view(lab, list(self._steps.values()), self.titles)
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
