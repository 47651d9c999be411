"""Time to lab from a baked VM2 against a full install, in the lab-in-a-box: ``python -m benchmarks.bake``.

Issue 15's figure, side by side in one box: a lab built with the installer (the reference), the bake (a lab
built up to the install, its VM2 imaged, the lab destroyed), and a lab of the same profile whose VM2 comes from
that image (``install: {mode: baked}``): create → ready for each.

The stand-in installer is made to take the share of a build the real one takes: on a real lab platform the
install is 30-60 minutes of a build of about an hour (the manual procedure), the rest (VMs, SSH, iSCSI, the
nested zone, storage, network, image and VM) a few minutes, so the install is about 80% of the build. Here
the rest takes about 15 s, so the installer sleeps ``--install-seconds`` (default 60 s,
``LABBOT_SANDBOX_INSTALL_SECONDS``) in its package step; the section says what share that gave.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

from benchmarks.common import stamp, write_section
from benchmarks.sandbox_labs import OWNER, bench_box
from config.profiles import InstallSpec

log = logging.getLogger(__name__)

NAME = "bake"
PREFIX, PUBLIC = "bbk", "198.19.97.1/24"


async def _ready_in(box, name: str, profile: str, timeout: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Create one lab and wait for it; (create → ready seconds, its install_zstack step's seconds)."""
    started = time.perf_counter()
    view = await box.rt.service.create(OWNER, name=name, profile=profile)
    box.names.append(name)
    await box.rt.engine.wait_idle(view.id, timeout=timeout)
    took = time.perf_counter() - started
    timing = await box.timing(view.id)
    if timing.state != "ready":
        raise RuntimeError(f"lab {name} did not become ready: {timing.state}")
    begun, ended = timing.steps["install_zstack"]
    return took, (ended - begun).total_seconds()


async def run(*, install_seconds: float, latency_scale: float, timeout: float) -> list[str]:
    os.environ["LABBOT_SANDBOX_INSTALL_SECONDS"] = f"{install_seconds:g}"  # read by the box's simulator process
    async with bench_box(NAME, prefix=PREFIX, public=PUBLIC, latency_scale=latency_scale, labs=6) as box:
        rt = box.rt
        full, full_install = await _ready_in(box, "ref-full", "sandbox", timeout)

        async def progress(line: str) -> None:
            log.info("bake: %s", line)

        started = time.perf_counter()
        baked = await rt.baking.bake(profile="sandbox", from_lab=None, image_name="bench-vm2-baked",
                                     progress=progress)
        bake = time.perf_counter() - started
        recipe = rt.profiles["sandbox"]
        rt.profiles["sandbox-baked"] = recipe.model_copy(update={
            "name": "sandbox-baked", "vm2": recipe.vm2.model_copy(update={"image": baked.name}),
            "install": InstallSpec(mode="baked", timeout_minutes=recipe.install.timeout_minutes),
        })
        fast, fast_start = await _ready_in(box, "from-baked", "sandbox-baked", timeout)
        for name in ("ref-full", "from-baked"):
            await rt.service.destroy(OWNER, name)
        await box.settle(timeout)
        leftovers = await box.platform_leftovers()
    return [
        stamp(),
        f"- installer stand-in: {install_seconds:g} s of packages, so the install is "
        f"{full_install / full:.0%} of a full build (about 80% on a real platform: 30-60 min of about an hour)",
        f"- full build with the installer (reference): create → ready **{full:.1f} s** (install step "
        f"{full_install:.1f} s)",
        f"- bake: a lab built up to the install, VM2 imaged ({baked.size_bytes / 1024**2:.1f} MiB of VM2's files "
        f"here), the lab destroyed: {bake:.1f} s, once per profile and ZStack version",
        f"- build from the baked image: create → ready **{fast:.1f} s** (ZStack started with the lab's identity "
        f"in {fast_start:.1f} s); **{fast / full:.2f}** of a full build",
        f"- platform leftovers after destroy: {leftovers} (the baked image stays: it is the point)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bake")
    parser.add_argument("--install-seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="a 10 s install instead (a smoke run)")
    parser.add_argument("--latency-scale", type=float, default=0.02)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    install = 10.0 if args.quick else args.install_seconds
    lines = asyncio.run(run(install_seconds=install, latency_scale=args.latency_scale, timeout=1800))
    print(write_section(NAME, lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
