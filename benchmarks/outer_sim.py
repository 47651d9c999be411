"""The lab platform for sandbox benchmarks, in its own process: ``python -m benchmarks.outer_sim ...``.

The outer simulator (with the lab-in-a-box's hooks) runs apart from the labbot process under test, so the
labbot process's memory, file descriptors and connections are labbot's alone, and the simulator counts as part
of the box. Unlike ``labbot sim zstack --hooks sandbox`` it takes the box's base dir, prefix and public network
as arguments and scales the nested simulators' latencies too (the installer starts them on each VM2), so the
whole lab runs at one scale of a real platform's durations. It prints its URL on the first line of stdout.

``--plain`` serves a platform with no hooks (nothing made on this machine) and room for thousands of labs:
large hosts and storage, and a /20 public network, for the cleanup benchmark's 1,000 labs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from sandbox.config import SandboxConfig, nested_sim_command
from sandbox.hooks import OuterSandboxHooks
from sandbox.zstack_sim.app import create_app
from sandbox.zstack_sim.seed import GiB, OuterSeed
from sandbox.zstack_sim.server import start_server


def box_config(base_dir: Path, prefix: str, public_gateway: str, latency_scale: float) -> SandboxConfig:
    """The box's config, with nested simulators at ``latency_scale`` like the outer one."""
    nested = (*nested_sim_command(), "--latency-scale", f"{latency_scale:g}")
    return SandboxConfig(base_dir=base_dir, prefix=prefix, public_gateway=public_gateway, nested_sim=nested)


# Room for 1,000+ labs (2 VMs, a 50 GB volume and a public address each) on the plain platform.
PLAIN_SEED = OuterSeed(hosts=4, cpu_num=4096, memory=64 * 1024 * GiB, primary_storage_capacity=1024 * 1024 * GiB,
                       ranges={"sandbox-public": ("198.18.16.10", "198.18.31.250", "255.255.240.0", "198.18.16.1")})


async def serve(config: SandboxConfig | None, latency_scale: float) -> None:
    if config is None:
        app = create_app("outer", latency_scale=latency_scale, outer_seed=PLAIN_SEED)
    else:
        app = create_app("outer", hooks=OuterSandboxHooks(config), latency_scale=latency_scale,
                         outer_seed=OuterSeed(ranges=config.public_ranges()))
    server, task, port = await start_server(app, "127.0.0.1", 0)
    print(f"http://127.0.0.1:{port}/zstack/v1", flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    await task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", action="store_true", help="no sandbox hooks; room for thousands of labs")
    parser.add_argument("--base-dir", type=Path)
    parser.add_argument("--prefix")
    parser.add_argument("--public", help="the box's public gateway, e.g. 198.19.64.1/24")
    parser.add_argument("--latency-scale", type=float, default=0.05)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = None
    if not args.plain:
        if not (args.base_dir and args.prefix and args.public):
            parser.error("--base-dir, --prefix and --public name the box (or give --plain)")
        config = box_config(args.base_dir, args.prefix, args.public, args.latency_scale)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, args.latency_scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
