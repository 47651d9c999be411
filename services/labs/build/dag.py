"""A small durable DAG runner: steps with dependencies, run as soon as their dependencies are done.

The order is ``graphlib.TopologicalSorter``'s; this module adds what it does not do: running ready steps
concurrently, recording them, retrying transient failures and stopping everything at the first failure.

Independent branches run concurrently, so a lab's wall time approaches the critical path of its remote work.
Every step records its state before and after running (``StepRecorder``), so a restarted process skips what is
done and re-runs, idempotently, what was running. The first failure stops the run: running siblings are
cancelled (they go back to pending) and the failure is raised as StepFailed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Protocol

from services.errors import LabbotError
from services.i18n import _

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One unit of remote work: a name, a title for people, dependencies, a timeout and a retry budget."""

    name: str
    title: str
    run: Callable[[], Awaitable[None]]
    after: tuple[str, ...] = ()
    timeout: float = 600.0
    attempts: int = 2  # how many times a transient failure is tried before the step fails
    retry_delay: float = 2.0


class StepRecorder(Protocol):
    """Where step states are kept (the database in production)."""

    async def started(self, name: str) -> None:
        """The step begins an attempt."""

    async def finished(self, name: str) -> None:
        """The step succeeded."""

    async def failed(self, name: str, error: str) -> None:
        """The step failed for good (after its retries)."""

    async def reset(self, name: str) -> None:
        """The step was interrupted (cancelled) and will run again later."""


@dataclass
class StepFailed(Exception):
    """A step failed for good; ``error`` is safe to show people."""

    step: str
    error: str
    cause: BaseException | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return _("step {step} failed: {error}").format(step=self.step, error=self.error)


def describe_error(err: BaseException) -> str:
    """A one-paragraph, secret-free description of why something failed."""
    if isinstance(err, LabbotError):
        return err.user_message
    if isinstance(err, TimeoutError):
        return _("timed out")
    return _("unexpected {name} (see labbot's log)").format(name=type(err).__name__)


def _sorter(steps: Sequence[Step]) -> TopologicalSorter[str]:
    """The steps' order, refusing duplicate names, unknown dependencies and cycles (programming errors)."""
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError("duplicate step names")
    known = set(names)
    for step in steps:
        missing = set(step.after) - known
        if missing:
            raise ValueError(f"step {step.name} depends on unknown {sorted(missing)}")
    sorter = TopologicalSorter({s.name: s.after for s in steps})
    try:
        sorter.prepare()
    except CycleError as err:
        raise ValueError(f"dependency cycle among {sorted(set(err.args[1]))}") from None
    return sorter


def validate(steps: Sequence[Step]) -> None:
    """Refuse duplicate names, unknown dependencies and cycles (a programming error, caught in tests)."""
    _sorter(steps)


def restrict(steps: Sequence[Step], goals: set[str]) -> list[Step]:
    """The steps needed for ``goals``: the goals and everything they depend on, in the original order."""
    by_name = {s.name: s for s in steps}
    needed: set[str] = set()
    pending = [g for g in goals if g in by_name]
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(by_name[name].after)
    return [s for s in steps if s.name in needed]


async def run_dag(
    steps: Sequence[Step],
    *,
    done: set[str],
    recorder: StepRecorder,
    is_retryable: Callable[[BaseException], bool],
) -> None:
    """Run every step not in ``done``, each once its dependencies are done; raise StepFailed on failure."""
    sorter = _sorter(steps)
    by_name = {s.name: s for s in steps}
    running: dict[asyncio.Task[None], str] = {}
    try:
        while sorter.is_active():
            ready = sorter.get_ready()
            for name in ready:
                if name not in done:
                    task = asyncio.create_task(_attempt(by_name[name], recorder, is_retryable), name=f"step:{name}")
                    running[task] = name
            if skipped := [name for name in ready if name in done]:
                sorter.done(*skipped)  # recorded done by an earlier run: their dependents may start now
                continue
            if not running:
                raise RuntimeError("no runnable step: the DAG is inconsistent")
            completed, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in completed:
                name = running.pop(task)
                task.result()  # raises StepFailed
                sorter.done(name)
    finally:
        for task in running:
            task.cancel()
        for task, name in list(running.items()):
            try:
                await task
            except (asyncio.CancelledError, StepFailed):
                pass
            except Exception:
                log.exception("step %s failed while being cancelled", name)
            try:
                await asyncio.shield(recorder.reset(name))
            except Exception:
                log.exception("could not reset step %s", name)


async def _attempt(step: Step, recorder: StepRecorder, is_retryable: Callable[[BaseException], bool]) -> None:
    for attempt in range(1, step.attempts + 1):
        await recorder.started(step.name)
        try:
            async with asyncio.timeout(step.timeout):
                await step.run()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            last = attempt == step.attempts or not is_retryable(err)
            log.warning("step %s attempt %d failed: %s", step.name, attempt, describe_error(err),
                        exc_info=not isinstance(err, LabbotError | TimeoutError))
            if last:
                message = describe_error(err)
                if isinstance(err, TimeoutError):
                    message = _("timed out after {timeout:g} s").format(timeout=step.timeout)
                await recorder.failed(step.name, message)
                raise StepFailed(step.name, message, err) from err
            await asyncio.sleep(step.retry_delay * attempt)
        else:
            await recorder.finished(step.name)
            return
