"""Rehearsal jobs for ``labbot worker --jobs tests.scheduler.rehearsal:jobs`` in the multi-process tests.

They take the place of the lab pipeline (which needs lab hosts) but do everything else for real: the engine
claims and renews leases, and every state change is written together with an audit event naming the process
(``rehearsal:built`` / ``rehearsal:destroyed``) in one transaction, so the tests can count, from the
database alone, how many times each lab was really provisioned and destroyed, and by whom.
"""

from __future__ import annotations

import asyncio
import os

from services.labs import repository as repo
from services.labs.engine import Job
from services.labs.models import LabState
from services.labs.notifier import Notice, NoticeKind
from services.labs.runtime import Runtime
from services.labs.views import lab_view

BUILD_SECONDS_ENV = "LABBOT_REHEARSAL_BUILD_SECONDS"


def jobs(rt: Runtime) -> tuple[Job, Job]:
    """Build: ``provisioning``, a pause (``LABBOT_REHEARSAL_BUILD_SECONDS``), ``ready``. Destroy: ``destroyed``."""
    pause = float(os.environ.get(BUILD_SECONDS_ENV, "0.5"))
    owner = rt.engine.owner

    async def step(lab_id: int, target: LabState, event: str | None, kind: NoticeKind | None) -> None:
        async with rt.sessions() as session, session.begin():
            lab = await repo.get(session=session, lab_id=lab_id)
            if lab.state != target:
                await repo.transition(session=session, lab=lab, target=target, actor=owner)
            if event is not None:
                await repo.add_event(session=session, lab=lab, actor=owner, kind=event, detail=owner)
            await repo.save(session=session)
            view = lab_view(lab)
        if kind is not None:
            await rt.notifier.notify(Notice(kind, view, actor=owner))

    async def build(lab_id: int, attention: asyncio.Event) -> None:
        await step(lab_id, LabState.PROVISIONING, None, None)
        await asyncio.sleep(pause)
        await step(lab_id, LabState.READY, "rehearsal:built", NoticeKind.READY)

    async def destroy(lab_id: int, attention: asyncio.Event) -> None:
        await step(lab_id, LabState.DESTROYED, "rehearsal:destroyed", NoticeKind.DESTROYED)

    return build, destroy
