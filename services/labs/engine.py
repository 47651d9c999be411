"""The lab engine: background work that builds and destroys labs, durable across crashes and restarts.

Each lab with work to do (``requested``/``provisioning`` → build, ``destroying`` → destroy) gets one task in
this process, after it claims the lab's lease in the database, so a lab is worked on by exactly one process
even with several replicas. The lease is renewed while working; a dead process's labs are picked up after
its lease expires (the poll loop). ``kick`` is how the service says "this lab has new work".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from services.db import utcnow
from services.errors import ConflictError
from services.i18n import _
from services.labs import repository as repo
from services.labs.build.dag import StepFailed
from services.labs.models import LabState
from services.labs.notifier import Notifier
from services.labs.states import WORKING_STATES

log = logging.getLogger(__name__)

# A lab's build or destroy, given the lab id and an event that is set when the lab needs attention
# (e.g. a destroy was requested while it was being built).
Job = Callable[[int, asyncio.Event], Coroutine[Any, Any, None]]


def process_id() -> str:
    """A name for this process in lease columns: host, pid and a random suffix."""
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{uuidlib.uuid4().hex[:6]}"


class LabEngine:
    """Runs builds and destroys as background tasks, one per lab, under a database lease."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        notifier: Notifier,
        build: Job,
        destroy: Job,
        owner: str | None = None,
        poll_interval: float = 10.0,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.notifier = notifier
        self.owner = owner or process_id()
        self._build = build
        self._destroy = destroy
        self._poll_interval = poll_interval
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._attention: dict[int, asyncio.Event] = {}
        self._building: set[int] = set()
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False
        # Unbounded, 50 labs at once queued on the database pool until its timeout failed their steps; a lab
        # waiting here holds no lease, so a less busy replica can claim it meanwhile.
        self._slots = asyncio.Semaphore(settings.max_concurrent_jobs)
        self._running: set[int] = set()

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every lab left mid-way and start watching for work (and for dead processes' labs)."""
        self._stopping = False
        await self.poll_once()
        self._poller = asyncio.create_task(self._poll_forever(), name="lab-engine-poller")

    async def stop(self) -> None:
        """Cancel our tasks (their labs resume on the next start) and release our leases."""
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def kick(self, lab_id: int) -> None:
        """Make sure this lab is worked on soon; if it already is, tell its task to look again."""
        if self._stopping:
            return
        task = self._tasks.get(lab_id)
        if task is not None and not task.done():
            self._attention[lab_id].set()
            return
        self._attention[lab_id] = asyncio.Event()
        self._tasks[lab_id] = asyncio.create_task(self._work(lab_id), name=f"lab:{lab_id}")

    async def wait_idle(self, lab_id: int | None = None, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until the lab's task (or every task) has finished (tests, the demo script)."""
        async with asyncio.timeout(timeout):
            while True:
                tasks = [t for i, t in self._tasks.items() if (lab_id is None or i == lab_id) and not t.done()]
                if not tasks:
                    return
                await asyncio.wait(tasks)

    @property
    def running_labs(self) -> list[int]:
        """Labs this process is building or destroying right now (at most ``max_concurrent_jobs``)."""
        return sorted(self._running)

    @property
    def busy_labs(self) -> list[int]:
        """Labs this process has work for: running, or waiting for a slot."""
        return [i for i, t in self._tasks.items() if not t.done()]

    async def poll_once(self) -> list[int]:
        """Kick every lab that has work and no live lease holder; return their ids."""
        async with self.sessions() as session, session.begin():
            ids = await repo.claimable_ids(session=session, states=[s.value for s in WORKING_STATES], owner=self.owner)
        for lab_id in ids:
            self.kick(lab_id)
        return ids

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self.poll_once()
            except Exception:
                log.exception("engine poll failed; will try again")

    # --- one lab ------------------------------------------------------------------------------------

    async def _work(self, lab_id: int) -> None:
        async with self._slots:
            self._running.add(lab_id)
            try:
                # A kick that lands while the last round is giving its lease back would be lost: look again.
                while await self._work_claimed(lab_id) and self._attention[lab_id].is_set() and not self._stopping:
                    log.debug("lab %s was kicked while its work ended; looking again", lab_id)
            finally:
                self._running.discard(lab_id)

    async def _work_claimed(self, lab_id: int) -> bool:
        """One round of work under the lab's lease; False when another process holds it."""
        if not await self._claim(lab_id):
            log.info("lab %s is worked on by another process", lab_id)
            return False
        renewer = asyncio.create_task(self._renew(lab_id, asyncio.current_task()), name=f"lease:{lab_id}")
        try:
            attention = self._attention[lab_id]
            while True:
                attention.clear()
                async with self.sessions() as session:
                    lab = await repo.get(session=session, lab_id=lab_id)
                state = lab.state
                if state in (LabState.REQUESTED, LabState.PROVISIONING):
                    await self._run_build(lab_id, attention)
                elif state == LabState.DESTROYING:
                    if lab.next_attempt_at is not None and lab.next_attempt_at > utcnow():
                        return True
                    await self._run_destroy(lab_id, attention)
                elif attention.is_set():
                    continue  # kicked while the state was read (a destroy asked just now): read it again
                else:
                    return True
                if not attention.is_set():
                    # The job ended on its own; loop once more only if the state still asks for work.
                    async with self.sessions() as session:
                        now_state = (await repo.get(session=session, lab_id=lab_id)).state
                    if now_state == state or now_state not in WORKING_STATES:
                        return True
        except asyncio.CancelledError:
            log.info("work on lab %s interrupted; it resumes on the next start", lab_id)
            raise
        except Exception:
            log.exception("work on lab %s crashed", lab_id)
            return False
        finally:
            renewer.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with self.sessions() as session, session.begin():
                    await repo.release(session=session, lab_id=lab_id, owner=self.owner)
        return True

    async def _run_build(self, lab_id: int, attention: asyncio.Event) -> None:
        build = asyncio.create_task(self._build(lab_id, attention), name=f"build:{lab_id}")
        watcher = asyncio.create_task(self._watch_for_destroy(lab_id, attention, build))
        self._building.add(lab_id)
        try:
            await build
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being stopped ourselves
            log.info("build of lab %s stopped: a destroy was requested", lab_id)
        except StepFailed:
            pass  # recorded by the build job; the lab is failed
        finally:
            self._building.discard(lab_id)
            watcher.cancel()

    async def _watch_for_destroy(self, lab_id: int, attention: asyncio.Event, build: asyncio.Task[None]) -> None:
        """Cancel the build as soon as the lab is asked to be destroyed."""
        while not build.done():
            await attention.wait()
            attention.clear()
            async with self.sessions() as session:
                state = (await repo.get(session=session, lab_id=lab_id)).state
            if state == LabState.DESTROYING:
                build.cancel()
                attention.set()  # so the work loop runs the destroy next
                return

    async def _run_destroy(self, lab_id: int, attention: asyncio.Event) -> None:
        await self._destroy(lab_id, attention)

    @contextlib.asynccontextmanager
    async def hold(self, lab_id: int) -> AsyncIterator[None]:
        """Hold the lab's lease around work that is neither a build nor a destroy (``labbot bake``), so that no
        process, this one's engine included, starts work on the lab meanwhile; a destroy asked meanwhile waits
        and runs after. ConflictError when the lab is being worked on."""
        holder = f"{self.owner}:hold"
        async with self.sessions() as session, session.begin():
            held = await repo.claim(session=session, lab_id=lab_id, owner=holder, seconds=self.settings.lease_seconds)
        if not held:
            raise ConflictError(_("the lab is being worked on (built, destroyed or baked); try again when that is "
                                  "done"))

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.settings.lease_seconds / 3)
                try:
                    async with self.sessions() as session, session.begin():
                        await repo.claim(session=session, lab_id=lab_id, owner=holder,
                                         seconds=self.settings.lease_seconds)
                except Exception:
                    log.exception("could not renew the hold on lab %s", lab_id)

        renewer = asyncio.create_task(renew(), name=f"hold:{lab_id}")
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with self.sessions() as session, session.begin():
                    await repo.release(session=session, lab_id=lab_id, owner=holder)
            self.kick(lab_id)  # work asked for while it was held (a destroy) starts now

    async def _claim(self, lab_id: int) -> bool:
        async with self.sessions() as session, session.begin():
            return await repo.claim(
                session=session, lab_id=lab_id, owner=self.owner, seconds=self.settings.lease_seconds
            )

    async def _renew(self, lab_id: int, worker: asyncio.Task[None] | None) -> None:
        """Renew the lease every third of its length; if we lost it, stop working at once.

        Each renewal also re-reads the lab's state: a destroy requested through another process (which cannot
        kick our task) is noticed here, and the build stops as it would for a local destroy.
        """
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                held = await self._claim(lab_id)
                async with self.sessions() as session:
                    state = (await repo.get(session=session, lab_id=lab_id)).state
            except Exception:
                log.exception("could not renew the lease on lab %s", lab_id)
                continue
            if not held and worker is not None:
                log.error("lost the lease on lab %s to another process; stopping work on it", lab_id)
                worker.cancel()
                return
            attention = self._attention.get(lab_id)
            if state == LabState.DESTROYING and attention is not None and lab_id in self._building:
                log.info("lab %s is to be destroyed (asked elsewhere); stopping its build", lab_id)
                attention.set()
