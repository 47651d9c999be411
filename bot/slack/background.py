"""Work that listeners start after ``ack()``: tracked tasks, errors reported through bot.slack.errors.

asyncio keeps only weak references to tasks and Bolt keeps none to the listeners it starts, so every background
task is held here until it ends; ``drain`` waits for them on shutdown (and in tests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from bot.metrics import Metrics
from bot.slack.errors import report
from bot.slack.reply import UserReply
from services.errors import LabbotError

log = logging.getLogger(__name__)


class Background:
    """The set of running background tasks; counts each one's outcome in ``labbot_commands``."""

    def __init__(self, metrics: Metrics) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._metrics = metrics

    def spawn(self, work: Coroutine[Any, Any, None], *, reply: UserReply | None, what: str) -> asyncio.Task[None]:
        """Run ``work`` in the background; if it raises, the user who asked is told (see bot.slack.errors)."""
        task = asyncio.create_task(self._guard(work, reply, what), name=f"slack:{what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, work: Coroutine[Any, Any, None], reply: UserReply | None, what: str) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as err:
            self._metrics.command(what, "refused" if isinstance(err, LabbotError) else "error")
            await report(err, reply=reply, what=what)
        else:
            self._metrics.command(what, "ok")

    @property
    def running(self) -> int:
        """How many tasks are still running."""
        return len(self._tasks)

    async def drain(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait for running tasks (new ones started meanwhile included), cancelling what is left at the deadline."""
        try:
            async with asyncio.timeout(timeout):
                while self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
        except TimeoutError:
            log.warning("cancelling %d Slack tasks still running at shutdown", len(self._tasks))
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
