"""``labbot sim zstack``: run the ZStack API simulator standalone (the demo, the sandbox's VM2, by hand)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from enum import StrEnum
from pathlib import Path

import typer

from services.errors import ConfigError

log = logging.getLogger(__name__)

sim_app = typer.Typer(help="Simulators of the systems labbot talks to.", no_args_is_help=True)

_SANDBOX_HOOKS = {"outer": "sandbox.hooks:OuterSandboxHooks", "nested": "sandbox.hooks:NestedSandboxHooks"}


class Role(StrEnum):
    """Which management node to simulate."""

    outer = "outer"
    nested = "nested"


def load_hooks(spec: str, role: str) -> object:
    """Instantiate hooks from ``sandbox`` (the lab-in-a-box's for this role) or ``package.module:Class``.

    Imported only when asked for, so the simulator runs before (and without) the sandbox's hooks.
    """
    target = _SANDBOX_HOOKS[role] if spec == "sandbox" else spec
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise ConfigError(f"--hooks must be 'sandbox' or 'package.module:Class', got {spec!r}")
    try:
        hooks_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot load simulator hooks {target}: {err}") from None
    return hooks_class()


@sim_app.command("zstack")
def zstack(
    role: Role = typer.Option(..., "--role", help="outer: a seeded lab platform; nested: a fresh ZStack install."),
    host: str = typer.Option("127.0.0.1", help="Listen address: loopback, 198.18.0.0/15, or 0.0.0.0 in a netns."),
    port: int = typer.Option(8080, min=0, max=65535, help="Port to listen on (0 = any free port)."),
    latency_scale: float = typer.Option(0.0, min=0.0, help="Simulated durations x this (1 = real-node speed)."),
    fail_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of mutating calls failing with SYS.1006."),
    drop_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of requests whose connection is dropped."),
    slow_poll: float = typer.Option(0.0, min=0.0, help="Seconds every api-jobs answer is held back."),
    hooks: str | None = typer.Option(None, help="'sandbox' for the lab-in-a-box's hooks, or package.module:Class."),
    profiles_dir: Path | None = typer.Option(None, help="Lab profiles the outer role seeds from."),
    public_url: str | None = typer.Option(None, help="Base URL for 202 locations (default: the request's host)."),
    seed: int = typer.Option(0, help="Seed of the fault dice."),
) -> None:
    """Serve a simulated ZStack management node until interrupted; prints its URL and credentials."""
    from sandbox.zstack_sim.app import create_app
    from sandbox.zstack_sim.faults import Faults
    from sandbox.zstack_sim.server import connect_host, start_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hook_object = load_hooks(hooks, role.value) if hooks else None
    outer_seed = None
    if role.value == "outer" and hooks == "sandbox":
        # The VMs land on the box's public bridge, so addresses come from its subnet (LABBOT_SANDBOX_PUBLIC).
        from sandbox.config import SandboxConfig
        from sandbox.zstack_sim.seed import OuterSeed

        outer_seed = OuterSeed(ranges=SandboxConfig.from_env().public_ranges())
    app = create_app(role.value, hooks=hook_object, latency_scale=latency_scale,
                     faults=Faults(fail_rate=fail_rate, drop_rate=drop_rate, slow_poll=slow_poll, seed=seed),
                     seed_profiles_dir=profiles_dir, public_base_url=public_url, outer_seed=outer_seed)

    async def run() -> None:
        _, task, bound = await start_server(app, host, port)
        typer.echo(f"ZStack simulator ({role.value}) on http://{connect_host(host)}:{bound}/zstack/v1")
        typer.echo("accepts: account admin, password 'password' (sent as its SHA-512 hex, as ZStack expects)")
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
