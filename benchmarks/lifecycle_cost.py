"""What one lab lifecycle costs labbot itself: ``python -m benchmarks.lifecycle_cost [--labs N] [--profile]``.

Issue 13's targets, on real labs in the lab-in-a-box (the outer simulator runs in its own process, so the CPU
measured here is labbot's: the engine, pipeline, database, SSH and HTTP clients, with a notifier that only
counts):

1. labbot's CPU per lab lifecycle (create → ready → destroy): the process's user+system CPU time over the
   whole lifecycle of ``--labs`` labs built one after the other (target ≤ 0.3 s per lab);
2. database round trips per build step: every SQL statement sent and every COMMIT, counted with SQLAlchemy's
   engine events and attributed to the asyncio task that sent them (``step:<name>`` tasks are the steps; the
   build's own bookkeeping runs in ``build:<id>``/``lab:<id>``); target ≤ 3 per step. BEGIN is not counted: the
   SQLite driver folds it into the first statement and asyncpg sends it with the first statement too.

``--profile`` adds the 15 functions with the most cumulative CPU (cProfile) to the output, not to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import pstats
import resource
import sys
import time
from collections import Counter
from typing import Any

from sqlalchemy import event

from benchmarks.common import stamp, write_section
from benchmarks.sandbox_labs import BenchBox, bench_box

log = logging.getLogger(__name__)

NAME = "lifecycle_cost"
PREFIX, PUBLIC = "blc", "198.19.72.1/24"


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (the outer simulator is another process)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RoundTrips:
    """Statements and commits sent to the database, by the kind of asyncio task that sent them."""

    def __init__(self, engine: Any) -> None:
        self.by_task: Counter[str] = Counter()
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._statement)
        event.listen(sync, "commit", self._commit)

    @staticmethod
    def _task() -> str:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return "no task"
        name = task.get_name() if task else "no task"
        if name.startswith("Task-"):
            return "unnamed tasks (gathered inside a step or a job)"
        return name if name.startswith("step:") else name.split(":", 1)[0]

    def _statement(self, *_args: Any) -> None:
        self.by_task[self._task()] += 1

    def _commit(self, *_args: Any) -> None:
        self.by_task[self._task()] += 1

    def reset(self) -> None:
        self.by_task.clear()


async def lifecycle(box: BenchBox, name: str, timeout: float) -> str:
    """Create one lab, wait until it is ready (or failed), destroy it, wait until it is gone; its final state."""
    (lab_id,) = await box.create([name])
    await box.settle(timeout)
    built = (await box.timing(lab_id)).state
    await box.destroy([name])
    await box.settle(timeout)
    return built


async def run(*, labs: int, latency_scale: float, timeout: float, profile: bool) -> tuple[list[str], bool]:
    async with bench_box(NAME, prefix=PREFIX, public=PUBLIC, latency_scale=latency_scale, labs=1) as box:
        trips = RoundTrips(box.rt.db_engine)
        await lifecycle(box, "cost-warm", timeout)  # imports, first connections, JIT-free but cache-warm
        trips.reset()
        profiler = cProfile.Profile() if profile else None
        states, steps_run = [], 0
        cpu_before, wall_before = cpu_seconds(), time.perf_counter()
        if profiler:
            profiler.enable()
        for i in range(labs):
            states.append(await lifecycle(box, f"cost-{i:02d}", timeout))
        if profiler:
            profiler.disable()
        cpu, wall = cpu_seconds() - cpu_before, time.perf_counter() - wall_before
        async with box.rt.sessions() as session:
            from services.labs import repository as repo

            for i in range(labs):
                lab = await repo.get_latest_by_name(session=session, name=f"cost-{i:02d}")
                steps_run += len([s for s in await repo.list_steps(session=session, lab_id=lab.id)
                                  if s.attempt > 0])
        leftovers = await box.platform_leftovers()
    per_lab = cpu / labs
    in_steps = sum(n for task, n in trips.by_task.items() if task.startswith("step:"))
    total = sum(trips.by_task.values())
    per_step, all_per_step = in_steps / max(steps_run, 1), total / max(steps_run, 1)
    ready = states.count("ready")
    met = per_lab <= 0.3 and per_step <= 3 and ready == labs and not any(leftovers.values())
    by_kind = Counter[str]()
    for task, n in trips.by_task.items():
        by_kind["steps" if task.startswith("step:") else task] += n
    lines = [
        "## Lifecycle cost: labbot's CPU and database round trips per lab (`python -m benchmarks.lifecycle_cost`)",
        "",
        stamp(),
        "",
        f"{labs} labs built and destroyed one after the other in the lab-in-a-box (after one warm-up lab), "
        f"simulator durations x {latency_scale:g}, database {'PostgreSQL' if box.postgres else 'SQLite'}; "
        f"the outer simulator and the box's sshd, tgtd, installers and nested simulators are other processes, "
        f"so the CPU is labbot's own (engine, pipeline, database, SSH and HTTP clients). Wall {wall:.1f} s.",
        "",
        "| figure | measured | target | |",
        "| --- | ---: | ---: | --- |",
        f"| labbot CPU per lab lifecycle (create → ready → destroy) | **{per_lab:.2f} s** | ≤ 0.3 s | "
        f"{'met' if per_lab <= 0.3 else 'not met'} |",
        f"| database round trips per build step (in the step's own task) | **{per_step:.1f}** | ≤ 3 | "
        f"{'met' if per_step <= 3 else 'not met'} |",
        f"| all round trips of the lifecycle / build steps | {all_per_step:.1f} | — | |",
        f"| labs ready | {ready} of {labs} | all | {'met' if ready == labs else 'not met'} |",
        f"| leftovers on the platform | {leftovers} | none | {'met' if not any(leftovers.values()) else 'not met'} |",
        "",
        f"Round trips by task kind over the {labs} lifecycles ({steps_run} step runs): "
        + ", ".join(f"{kind} {n}" for kind, n in by_kind.most_common()) + ".",
        "Per step: " + ", ".join(f"{task.removeprefix('step:')} {n / labs:.1f}"
                                 for task, n in sorted(trips.by_task.items()) if task.startswith("step:")) + ".",
    ]
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
        print(out.getvalue())
    return lines, met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="labbot's CPU and database round trips per lab lifecycle.")
    parser.add_argument("--labs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one lab")
    parser.add_argument("--latency-scale", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile", action="store_true", help="print where the CPU went (cProfile)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    labs = 1 if args.quick else args.labs
    lines, met = asyncio.run(run(labs=labs, latency_scale=args.latency_scale, timeout=args.timeout,
                                 profile=args.profile))
    print("\n".join(lines) if args.no_write else write_section(NAME, lines))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
