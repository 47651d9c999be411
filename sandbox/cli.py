"""``labbot sandbox up|down|status``: the lab-in-a-box on this machine (root, Linux).

``up`` checks the machine and prepares the base directory and the public network; the VMs themselves are made
by the outer simulator's hooks when labbot creates a lab. ``down`` removes everything the sandbox made,
including what a crashed run left behind. The base dir and name prefix come from ``--dir``/``--prefix`` or
``LABBOT_SANDBOX_DIR``/``LABBOT_SANDBOX_PREFIX``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer

from sandbox import lifecycle
from sandbox.config import SandboxConfig
from sandbox.system import SandboxUnavailableError

log = logging.getLogger(__name__)
T = TypeVar("T")

sandbox_app = typer.Typer(help="The lab-in-a-box: network namespaces with real sshd and tgtd.", no_args_is_help=True)

DirOption = typer.Option(None, "--dir", help="Base directory (default: $LABBOT_SANDBOX_DIR or /var/lib/labbot-sandbox)")
PrefixOption = typer.Option(None, "--prefix", help="Name prefix of namespaces and links (default: lbx)")


def _config(base_dir: Path | None, prefix: str | None) -> SandboxConfig:
    config = SandboxConfig.from_env()
    changes: dict[str, object] = {}
    if base_dir is not None:
        changes["base_dir"] = base_dir.resolve()
    if prefix is not None:
        changes["prefix"] = prefix
    # An invalid dir or prefix raises ConfigError, which ``labbot`` prints as one line.
    return dataclasses.replace(config, **changes) if changes else config  # type: ignore[arg-type]


def _print_status(status: lifecycle.Status) -> None:
    typer.echo(f"sandbox dir: {status.base_dir}")
    if not status.vms:
        typer.echo("VMs: none")
    for vm in status.vms:
        state = "running" if vm.running else "stopped"
        typer.echo(f"VM {vm.name} ({vm.uuid}) {state} in {vm.netns}")
        for address in vm.addresses:
            typer.echo(f"    {address}")
        for disk in vm.volumes:
            typer.echo(f"    disk /dev/disk/by-id/{disk}")
    for name, (size, used) in status.volumes.items():
        typer.echo(f"volume {name}: {size / 1024**3:.1f} GiB apparent, {used / 1024**2:.1f} MiB used")
    typer.echo(f"namespaces: {', '.join(status.namespaces) or 'none'}")
    typer.echo(f"links: {', '.join(status.links) or 'none'}")
    if status.stray_namespaces:
        typer.echo(f"leftovers without a VM record (removed by `down`): {', '.join(status.stray_namespaces)}")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except SandboxUnavailableError as err:
        typer.secho(f"labbot: {err}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None


@sandbox_app.command()
def up(base_dir: Path | None = DirOption, prefix: str | None = PrefixOption) -> None:
    """Check this machine and prepare the sandbox (base dir, public bridge, default 198.18.0.1/22)."""
    status = _run(lifecycle.up(_config(base_dir, prefix)))
    _print_status(status)


@sandbox_app.command()
def down(base_dir: Path | None = DirOption, prefix: str | None = PrefixOption) -> None:
    """Remove every namespace, link, process and file of the sandbox, including a crashed run's leftovers."""
    report = _run(lifecycle.down(_config(base_dir, prefix)))
    typer.echo(report.summary())


@sandbox_app.command()
def status(base_dir: Path | None = DirOption, prefix: str | None = PrefixOption) -> None:
    """Show the sandbox's VMs, volumes, namespaces and links."""
    result = _run(lifecycle.status(_config(base_dir, prefix)))
    _print_status(result)
