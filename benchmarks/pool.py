"""Time to lab with a warm pool, in the lab-in-a-box: ``python -m benchmarks.pool [--quick]``.

Issue 15's figures, side by side in one box: the full build of one lab (the reference: create → ready), then a
pool of N labs built ahead, then N creates at once (a class starting) each taking a pool lab: create → ready
for each (claim, credential rotation over SSH, platform renames, card), target ≤ 10 s. N is 12 (``--quick``: 2).
Results go to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from datetime import timedelta

from benchmarks.common import stamp, write_section
from benchmarks.sandbox_labs import bench_box
from config.profiles import PoolSpec
from services.labs.service import Actor

log = logging.getLogger(__name__)

NAME = "pool"
PREFIX, PUBLIC = "bpo", "198.19.96.1/24"
TARGET_SECONDS = 10.0


async def run(*, size: int, latency_scale: float, timeout: float) -> tuple[list[str], bool]:
    async with bench_box(NAME, prefix=PREFIX, public=PUBLIC, latency_scale=latency_scale, labs=2 * size + 2) as box:
        service = box.rt.service
        started = time.perf_counter()
        await box.create(["ref-full"])
        await box.settle(timeout)
        full = time.perf_counter() - started
        service.profiles["sandbox"] = service.profiles["sandbox"].model_copy(update={"pool": PoolSpec(size=size)})
        started = time.perf_counter()
        await service.pool.refill()
        await box.settle(timeout)
        pool_build = time.perf_counter() - started
        ready = (await service.pool.status())[0].ready

        async def claim(i: int) -> tuple[float, str]:
            begun = time.perf_counter()
            view = await service.create(Actor(f"U_STUDENT{i:02d}"), name=f"cls-{i:02d}", ttl=timedelta(hours=2))
            return time.perf_counter() - begun, view.state

        results = await asyncio.gather(*(claim(i) for i in range(1, size + 1)))
        claims = [t for t, state in results if state == "ready"]
        names = ["ref-full", *(f"cls-{i:02d}" for i in range(1, size + 1))]
        await asyncio.gather(*(service.destroy(Actor.system(), n) for n in names))
        await box.settle(timeout)
        await box.rt.service.pool.refill()  # nothing to build: the profile's pool is gone below
        service.profiles["sandbox"] = service.profiles["sandbox"].model_copy(update={"pool": PoolSpec(size=0)})
        leftovers = await box.platform_leftovers()
    worst = max(claims, default=float("inf"))
    met = len(claims) == size and worst <= TARGET_SECONDS
    lines = [
        stamp(),
        f"- full build of one lab (reference): **{full:.1f} s** (latency scale {latency_scale})",
        f"- pool of {size} built ahead in {pool_build:.1f} s ({ready} ready)",
        f"- {size} creates at once, each from the pool: {len(claims)} ready at once; create → ready median "
        f"**{statistics.median(claims) if claims else float('nan'):.2f} s**, worst **{worst:.2f} s** "
        f"(target ≤ {TARGET_SECONDS:g} s: {'met' if met else 'not met'}); {worst / full:.2f} of a full build",
        f"- platform leftovers after destroy: {leftovers}",
    ]
    return lines, met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pool")
    parser.add_argument("--quick", action="store_true", help="a pool of 2 instead of 12")
    parser.add_argument("--latency-scale", type=float, default=0.02)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    lines, met = asyncio.run(run(size=2 if args.quick else 12, latency_scale=args.latency_scale, timeout=1800))
    print(write_section(NAME, lines))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
