"""Load: many labs provisioned at once in the lab-in-a-box, then destroyed: ``python -m benchmarks.load [--quick]``.

Issue 8's load figures for 50 labs requested at the same moment (simulator durations scaled): labs per minute,
peak memory (labbot's RSS; the box's PSS), labbot's open file descriptors and SSH connections (established TCP
to port 22 owned by the process, read from /proc; and the per-connection ``sshd-session`` processes in the box),
and database connections (``pg_stat_activity`` for labbot's database, sampled from a separate connection; the
pool is bounded at pool_size + max_overflow). Then every lab is destroyed and the run checks that nothing
leaked: no VM or data volume on the platform, no VM namespace or process left in the box, no SSH connection,
and labbot's descriptors back where they started. Results go to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import time

from benchmarks.common import (
    MIB,
    CpuMeter,
    GroupCpu,
    Peaks,
    open_fds,
    process_count,
    rss_bytes,
    socket_peers,
    ssh_connections,
    stamp,
    write_section,
)
from benchmarks.sandbox_labs import PG_ADMIN_URL, BenchBox, bench_box

log = logging.getLogger(__name__)

NAME = "load"
PREFIX, PUBLIC = "blo", "198.19.65.1/24"
POOL_BOUND = 10 + 5  # services.db.make_engine: pool_size 10, max_overflow 5


class DbConnections:
    """Peak connections to one PostgreSQL database, sampled from a connection to another database."""

    def __init__(self, url: str) -> None:
        self.database = url.rsplit("/", 1)[1]
        self.peak = 0
        self.last = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            while True:
                self.last = int(await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", self.database))
                self.peak = max(self.peak, self.last)
                await asyncio.sleep(0.25)
        finally:
            await conn.close()

    async def __aenter__(self) -> DbConnections:
        self._task = asyncio.create_task(self._run(), name="benchmark-db-connections")
        await asyncio.sleep(0.3)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def vm_namespaces(box: BenchBox) -> int:
    """The box's VM namespaces (segments' ``<prefix>-net-...`` namespaces stay until ``down``)."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return 0
    return sum(1 for n in names if n.startswith(box.config.prefix + "-") and not n.startswith(box.config.prefix
                                                                                                + "-net-"))


async def run(*, labs: int, latency_scale: float, timeout: float) -> tuple[list[str], bool]:
    async with bench_box(NAME, prefix=PREFIX, public=PUBLIC, latency_scale=latency_scale, labs=labs) as box:
        base_fds = open_fds()
        sim_port = int(box.rt.settings.platform_url.split(":")[2].split("/")[0])
        names = [f"load-{i:02d}" for i in range(1, labs + 1)]
        box_cpu = GroupCpu()
        box_cpu_before = box_cpu.sample(box.box_pids())
        gauges = {
            "labbot_rss": lambda: float(rss_bytes()),
            "box_pss": box.box_pss,
            "fds": lambda: float(open_fds()),
            "ssh": lambda: float(ssh_connections()),
            "sshd_sessions": lambda: float(process_count("sshd-session", box.box_pids())
                                           + process_count("sshd", box.box_pids()[1:])),
            "vm_namespaces": lambda: float(vm_namespaces(box)),
            "box_cpu": lambda: box_cpu.sample(box.box_pids()),
        }
        db = DbConnections(box.database_url) if box.postgres else None
        cpu = CpuMeter().start()
        async with contextlib.AsyncExitStack() as stack:
            peaks = await stack.enter_async_context(Peaks(gauges, interval=1.0))
            if db is not None:
                await stack.enter_async_context(db)
            started = time.perf_counter()
            ids = await box.create(names)
            await box.settle(timeout)
            build_wall = time.perf_counter() - started
        cpu.stop()
        timings = [await box.timing(i) for i in ids]
        states = await box.states()
        ready = [t for t in timings if t.state == "ready"]
        started = time.perf_counter()
        await box.destroy(names)
        await box.settle(timeout)
        destroy_wall = time.perf_counter() - started
        await asyncio.sleep(1.0)  # let the last sshd children exit after their clients closed
        after = await box.states()
        leftovers = await box.platform_leftovers()
        # Descriptors still open that are neither the database pool nor HTTP keep-alive to the platform: leaks.
        peers = socket_peers()
        pooled = peers.get(5432, 0) + peers.get(sim_port, 0)
        end_fds = open_fds()
        leaks = {
            "VM namespaces": vm_namespaces(box),
            "box processes outside segments": len(box.box_pids()) - 1 - _segment_processes(box),
            "labbot SSH connections": ssh_connections(),
            "labbot fds above start (besides pooled connections)": max(0, end_fds - pooled - base_fds),
            **{f"platform {k}": v for k, v in leftovers.items()},
        }
        db_after = db.last if db else None
    rate = len(ready) / build_wall * 60
    walls = sorted(t.wall for t in ready)
    leak_free = not any(leaks.values())
    db_ok = db is None or db.peak <= POOL_BOUND
    met = len(ready) == labs and leak_free and db_ok and after.get("destroyed", 0) == labs
    lines = [
        f"## Load: {labs} labs at once in the lab-in-a-box (`python -m benchmarks.load`)",
        "",
        stamp(),
        "",
        f"Simulator durations (outer and nested) x {latency_scale:g}; database: "
        f"{'PostgreSQL' if box.postgres else 'SQLite'}; {labs} labs = {2 * labs} VM namespaces with sshd "
        f"(+ tgtd on VM1, the nested simulator on VM2), all requested at the same moment.",
        "",
        "| figure | measured |",
        "| --- | ---: |",
        f"| labs ready | {len(ready)} of {labs} (states after the build: {states}) |",
        f"| build: first request → last lab ready | {build_wall:.1f} s |",
        f"| **labs per minute** | **{rate:.1f}** |",
        f"| per-lab wall (request → ready): median, max | {statistics.median(walls):.1f} s, {walls[-1]:.1f} s |"
        if walls else "| per-lab wall | no lab ready |",
        f"| peak RSS of the labbot process | {peaks.peaks['labbot_rss'] / MIB:.0f} MiB |",
        f"| peak PSS of the whole box (outer simulator + every process in its namespaces) | "
        f"{peaks.peaks['box_pss'] / MIB:.0f} MiB |",
        f"| labbot open file descriptors: at start, peak, after destroy | {base_fds}, {peaks.peaks['fds']:.0f}, "
        f"{end_fds} ({peers.get(5432, 0)} pooled database connections, {peers.get(sim_port, 0)} HTTP keep-alive "
        "to the platform) |",
        f"| labbot SSH connections (TCP to :22), peak | {peaks.peaks['ssh']:.0f} |",
        f"| sshd processes in the box, peak (listeners + per-connection) | {peaks.peaks['sshd_sessions']:.0f} |",
        f"| VM namespaces, peak | {peaks.peaks['vm_namespaces']:.0f} |",
        f"| database connections (pg_stat_activity), peak; bound | {db.peak}; {POOL_BOUND} |" if db else
        "| database connections | SQLite (no server connections) |",
        f"| machine CPU busy during the build; labbot CPU | {cpu.busy:.0%} of {os.cpu_count()} cores; "
        f"{cpu.process_seconds:.0f} s ({cpu.process_seconds / labs:.2f} s per lab) |",
        f"| CPU of the box's processes during the build (at least) | {box_cpu.total - box_cpu_before:.0f} s "
        f"({(box_cpu.total - box_cpu_before) / labs:.1f} s per lab) |",
        f"| destroy of all {labs}: request → all destroyed | {destroy_wall:.1f} s (states after: {after}) |",
        f"| leaked after destroy | {'nothing' if leak_free else leaks} |",
        "",
        f"Database connections at the end (pool kept open): {db_after}." if db else "",
    ]
    return [line for line in lines if line is not None], met


def _segment_processes(box: BenchBox) -> int:
    """Processes in the box's segment namespaces (bridges only; normally none)."""
    from benchmarks.common import netns_pids

    return len(netns_pids(box.config.prefix + "-net"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load benchmark in the lab-in-a-box (issue 8).")
    parser.add_argument("--quick", action="store_true", help="5 labs instead of 50 (a smoke run)")
    parser.add_argument("--labs", type=int, default=None)
    parser.add_argument("--latency-scale", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    labs = args.labs or (5 if args.quick else 50)
    lines, met = asyncio.run(run(labs=labs, latency_scale=args.latency_scale, timeout=args.timeout))
    print(write_section(NAME, lines))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
