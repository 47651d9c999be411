"""The DAG runner: concurrency of independent branches, failure handling, resume, retries."""

from __future__ import annotations

import asyncio

import pytest

from services.errors import ExternalError
from services.labs.build.dag import Step, StepFailed, run_dag, validate


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def started(self, name: str) -> None:
        self.events.append(("started", name))

    async def finished(self, name: str) -> None:
        self.events.append(("finished", name))

    async def failed(self, name: str, error: str) -> None:
        self.events.append(("failed", f"{name}: {error}"))

    async def reset(self, name: str) -> None:
        self.events.append(("reset", name))


def _sleeper(log: list[str], name: str, seconds: float):
    async def run() -> None:
        log.append(f"+{name}")
        await asyncio.sleep(seconds)
        log.append(f"-{name}")

    return run


async def test_independent_branches_overlap_and_dependencies_wait() -> None:
    log: list[str] = []
    steps = [
        Step("a", "A", _sleeper(log, "a", 0.01)),
        Step("b", "B", _sleeper(log, "b", 0.2), after=("a",)),
        Step("c", "C", _sleeper(log, "c", 0.2), after=("a",)),
        Step("d", "D", _sleeper(log, "d", 0.01), after=("b", "c")),
    ]
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await run_dag(steps, done=set(), recorder=recorder, is_retryable=lambda e: False)
    elapsed = loop.time() - start
    assert log[0:2] == ["+a", "-a"] and log[-2:] == ["+d", "-d"]
    assert set(log[2:4]) == {"+b", "+c"}  # both started before either finished
    assert elapsed < 0.35  # 0.2 + 0.02 on the critical path, not 0.4 one after another
    assert {n for kind, n in recorder.events if kind == "finished"} == {"a", "b", "c", "d"}


async def test_done_steps_are_skipped() -> None:
    log: list[str] = []
    steps = [Step("a", "A", _sleeper(log, "a", 0)), Step("b", "B", _sleeper(log, "b", 0), after=("a",))]
    await run_dag(steps, done={"a"}, recorder=Recorder(), is_retryable=lambda e: False)
    assert log == ["+b", "-b"]


async def test_failure_cancels_siblings_and_resets_them() -> None:
    log: list[str] = []

    async def boom() -> None:
        await asyncio.sleep(0.01)
        raise ExternalError("platform said no")

    steps = [Step("slow", "Slow", _sleeper(log, "slow", 5)), Step("bad", "Bad", boom, attempts=1)]
    recorder = Recorder()
    with pytest.raises(StepFailed) as info:
        await run_dag(steps, done=set(), recorder=recorder, is_retryable=lambda e: False)
    assert info.value.step == "bad" and info.value.error == "platform said no"
    assert ("failed", "bad: platform said no") in recorder.events
    assert ("reset", "slow") in recorder.events and "-slow" not in log


async def test_transient_failures_are_retried() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("dropped")

    recorder = Recorder()
    steps = [Step("f", "F", flaky, attempts=3, retry_delay=0)]
    await run_dag(steps, done=set(), recorder=recorder, is_retryable=lambda e: isinstance(e, ConnectionError))
    assert calls == 3 and recorder.events[-1] == ("finished", "f")


async def test_timeout_is_reported() -> None:
    steps = [Step("t", "T", _sleeper([], "t", 5), timeout=0.05, attempts=1)]
    with pytest.raises(StepFailed, match=r"timed out after 0\.05 s"):
        await run_dag(steps, done=set(), recorder=Recorder(), is_retryable=lambda e: True)


def test_cycles_and_unknown_dependencies_are_refused() -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(ValueError, match="cycle"):
        validate([Step("a", "A", nothing, after=("b",)), Step("b", "B", nothing, after=("a",))])
    with pytest.raises(ValueError, match="unknown"):
        validate([Step("a", "A", nothing, after=("zzz",))])
