"""What the sweeps need from the running domain, as one small value that tests can build without a Runtime."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.profiles import LabProfile
from config.settings import Settings
from services.db import utcnow
from services.labs.build.health import HealthReport
from services.labs.lifecycle import Lifecycle
from services.labs.notifier import Notifier
from services.zstack.client import ZStackClient

if TYPE_CHECKING:
    from services.labs.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepContext:
    """The database, settings, profiles and notifier, plus the domain calls the sweeps use.

    ``kick`` hands a lab whose state now asks for work (destroying) to this process's engine; it is None in
    ``labbot sweep``, where the running labbot's engine picks such labs up on its next poll.
    """

    sessions: async_sessionmaker[AsyncSession]
    settings: Settings
    profiles: Mapping[str, LabProfile]
    notifier: Notifier
    health: Callable[[int], Awaitable[HealthReport]]
    announce_health: Callable[[HealthReport, str], Awaitable[None]]
    platform: ZStackClient  # the lab platform (the orphan sweep reads and deletes there)
    kick: Callable[[int], None] | None = None
    titles: Mapping[str, str] = field(default_factory=dict)
    refill_pool: Callable[..., Awaitable[Any]] | None = None
    lifecycle: Lifecycle = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # The sweeps change labs only through the lifecycle, which announces with our notifier and kicks our
        # engine (if any); frozen, so set once here.
        object.__setattr__(self, "lifecycle", Lifecycle(sessions=self.sessions, notifier=self.notifier,
                                                        titles=self.titles, kick=self.kick))

    @classmethod
    def from_runtime(cls, rt: Runtime, *, kick: bool = True) -> SweepContext:
        """The context of a running domain; ``kick=False`` leaves engine work to whichever process polls."""
        from services.labs.build.steps import TITLES

        return cls(
            sessions=rt.sessions,
            settings=rt.settings,
            profiles=rt.profiles,
            notifier=rt.notifier,
            health=rt.run_health,
            announce_health=rt.pipeline.notify_health_change,
            platform=rt.outer,
            kick=rt.engine.kick if kick else None,
            titles=TITLES,
            refill_pool=rt.service.pool.refill,
        )

    def kick_lab(self, lab_id: int) -> None:
        """Tell the engine (if this process has one working) that the lab has work now."""
        if self.kick is not None:
            self.kick(lab_id)


def clock_or_now(now: datetime | None) -> datetime:
    """The sweep's notion of now: the caller's (tests move time forward) or the wall clock."""
    return now if now is not None else utcnow()
