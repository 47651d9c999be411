"""The lab engine end to end in the lab-in-a-box: ``python -m benchmarks.engine [--quick]``.

Issue 5's targets, measured on real labs (namespace VMs with sshd and tgtd, the real installer and nested
simulator on VM2) with the simulators' realistic durations scaled by ``--latency-scale``:

1. One lab: wall time (create request → ready) divided by the critical path of its steps (the longest chain
   of dependent steps in the pipeline's DAG, with each step's measured duration; target ≤ 1.05), and divided by
   the sum of every step's duration, i.e. the manual one-after-another procedure (target ≤ 0.7).
2. N labs (20) requested at once: wall time from the first request to the last lab ready, against the single
   lab's (target ≤ 1.3x); peak memory of the labbot process (RSS) and of the whole box (PSS summed over the
   outer simulator and every process in the box's namespaces: sshd, tgtd, nested simulators).

Both runs happen in one box, one after the other, so the ratios compare like with like on a noisy machine.
Every lab is destroyed at the end and the platform checked for leftovers. Results go to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time

from benchmarks.common import MIB, CpuMeter, GroupCpu, Peaks, rss_bytes, stamp, write_section
from benchmarks.sandbox_labs import BenchBox, LabTiming, bench_box, critical_path

log = logging.getLogger(__name__)

NAME = "engine"
PREFIX, PUBLIC = "bek", "198.19.64.1/24"


async def build(box: BenchBox, names: list[str], timeout: float) -> tuple[float, list[LabTiming]]:
    """Request ``names`` at once, wait for the engine; return the wall time and each lab's timing."""
    started = time.perf_counter()
    ids = await box.create(names)
    await box.settle(timeout)
    wall = time.perf_counter() - started
    timings = [await box.timing(i) for i in ids]
    return wall, timings


async def teardown(box: BenchBox, names: list[str], timeout: float) -> dict[str, int]:
    await box.destroy(names)
    await box.settle(timeout)
    return await box.platform_leftovers()


async def run(*, labs: int, latency_scale: float, timeout: float) -> tuple[list[str], bool]:
    async with bench_box(NAME, prefix=PREFIX, public=PUBLIC, latency_scale=latency_scale, labs=labs) as box:
        dag = box.dag
        _, (single,) = await build(box, ["eng-one"], timeout)
        if single.state != "ready":
            raise RuntimeError(f"the single lab did not get ready: {await box.failures()}")
        left_one = await teardown(box, ["eng-one"], timeout)
        names = [f"eng-{i:02d}" for i in range(1, labs + 1)]
        box_cpu = GroupCpu()
        box_cpu.sample(box.box_pids())  # what the box had used before: subtracted below
        box_cpu_before = box_cpu.total
        gauges = {"labbot_rss": lambda: float(rss_bytes()), "box_pss": box.box_pss,
                  "box_cpu": lambda: box_cpu.sample(box.box_pids())}
        cpu = CpuMeter().start()
        async with Peaks(gauges, interval=1.0) as peaks:
            many_wall, many = await build(box, names, timeout)
        cpu.stop()
        failures = await box.failures()
        left_many = await teardown(box, names, timeout)
    durations = single.durations
    path, chain = critical_path(durations, dag)
    total = sum(durations.values())
    many_walls = [t.wall for t in many if t.state == "ready"] or [0.0]
    ratio_path, ratio_sum, ratio_many = single.wall / path, single.wall / total, many_wall / single.wall
    leftovers = {k: left_one[k] + left_many[k] for k in left_one}
    met = ratio_path <= 1.05 and ratio_sum <= 0.7 and ratio_many <= 1.3 and not any(leftovers.values()) \
        and not failures
    slowest = sorted(durations.items(), key=lambda kv: kv[1], reverse=True)
    # Which steps got slower with many labs at once: the median of each step over the N labs, against one lab.
    ok = [t for t in many if t.state == "ready"] or many
    growth = {s: statistics.median(t.durations.get(s, 0.0) for t in ok) / d for s, d in durations.items() if d > 0}
    grown = sorted(growth.items(), key=lambda kv: kv[1], reverse=True)
    lines = [
        f"## Engine: one lab and {labs} at once in the lab-in-a-box (`python -m benchmarks.engine`)",
        "",
        stamp(),
        "",
        f"Simulator durations (outer and nested) x {latency_scale:g}; database: "
        f"{'PostgreSQL' if box.postgres else 'SQLite'}; real sshd, tgtd, installer and nested simulator per lab.",
        "",
        "| figure | measured | target | |",
        "| --- | ---: | ---: | --- |",
        f"| one lab: wall / critical path | {single.wall:.2f} s / {path:.2f} s = **{ratio_path:.3f}** | ≤ 1.05 "
        f"| {'met' if ratio_path <= 1.05 else 'not met'} |",
        f"| one lab: wall / sum of steps | {single.wall:.2f} s / {total:.2f} s = **{ratio_sum:.3f}** | ≤ 0.7 "
        f"| {'met' if ratio_sum <= 0.7 else 'not met'} |",
        f"| {labs} labs at once: labs ready | {sum(t.state == 'ready' for t in many)} of {labs} | all | "
        f"{'met' if not failures else 'not met'} |",
        f"| {labs} labs at once: wall / one lab | {many_wall:.2f} s / {single.wall:.2f} s = **{ratio_many:.2f}** "
        f"| ≤ 1.3 | {'met' if ratio_many <= 1.3 else 'not met'} |",
        f"| peak RSS of the labbot process ({labs} labs) | {peaks.peaks['labbot_rss'] / MIB:.0f} MiB | — | |",
        f"| peak PSS of the whole box ({labs} labs) | {peaks.peaks['box_pss'] / MIB:.0f} MiB | — | |",
        f"| leftovers on the platform after destroy | {leftovers} | none | "
        f"{'met' if not any(leftovers.values()) else 'not met'} |",
        "",
        "Critical path: " + " → ".join(f"{s} {durations[s]:.2f} s" for s in chain) + ".",
        "Slowest steps: " + ", ".join(f"{s} {d:.2f} s" for s, d in slowest[:5]) + ".",
        f"{labs} labs: per-lab wall (request → ready) median {statistics.median(many_walls):.2f} s, "
        f"max {max(many_walls):.2f} s. Machine CPU busy during the {labs}-lab build: {cpu.busy:.0%} of "
        f"{os.cpu_count()} cores; labbot process CPU {cpu.process_seconds:.1f} s "
        f"({cpu.process_seconds / labs:.2f} s per lab); the box's processes (sshd, tgtd, installer, nested "
        f"simulators, outer simulator) at least {box_cpu.total - box_cpu_before:.0f} s "
        f"({(box_cpu.total - box_cpu_before) / labs:.1f} s per lab), of the "
        f"{cpu.busy * many_wall * (os.cpu_count() or 1):.0f} core-seconds the machine was busy.",
        "Steps slower with many labs (median over the labs / one lab): "
        + ", ".join(f"{s} x{g:.2f}" for s, g in grown[:6]) + ".",
        f"Database connections checked out at once, peak: {box.pool.peak_out} (pool bound 15); longest holds "
        f"by task: {box.pool.top()}.",
        *([f"Labs that failed: {failures}."] if failures else []),
    ]
    return lines, met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Engine benchmark in the lab-in-a-box (issue 5).")
    parser.add_argument("--quick", action="store_true", help="3 labs instead of 20 (a smoke run)")
    parser.add_argument("--labs", type=int, default=None)
    parser.add_argument("--latency-scale", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    labs = args.labs or (3 if args.quick else 20)
    lines, met = asyncio.run(run(labs=labs, latency_scale=args.latency_scale, timeout=args.timeout))
    print(write_section(NAME, lines))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
