"""``labbot sweep [--dry-run] [--only expiry|health|orphans|pool]``: run the scheduled jobs once, now.

For admins and cron: the same sweeps the scheduler runs, with the same claims, so running one next to a
live labbot acts once. Labs it moves to ``destroying`` are destroyed by the running labbot's engine (on its
next poll), which is the process whose notifier people are listening to. ``--dry-run`` reports what would be
done and changes nothing: no database write, no platform call that modifies, no notice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from enum import StrEnum

import typer

from bot.cli_worker import LogNotifier, attach_slack, configure_logging
from config.settings import Settings, load_settings
from services import db
from services.crypto import require_strong_secret_key
from services.errors import LabbotError
from services.i18n import _
from services.labs.runtime import Runtime
from services.scheduler.context import SweepContext
from services.scheduler.jobs import JOB_NAMES, JobName, run_job

log = logging.getLogger(__name__)


class JobChoice(StrEnum):
    """The jobs ``--only`` accepts."""

    expiry = "expiry"
    health = "health"
    orphans = "orphans"
    pool = "pool"


async def run_sweep(settings: Settings, *, names: Sequence[JobName], dry_run: bool,
                    echo: Callable[[str], None]) -> bool:
    """Run the named jobs once, printing each summary; True when every job did all its work."""
    rt = Runtime(settings, notifiers=[LogNotifier()])
    slack = None if dry_run else attach_slack(rt, settings)
    ok = True
    try:
        await db.require_migrated(rt.db_engine)
        ctx = SweepContext.from_runtime(rt, kick=False)
        for name in names:
            try:
                summary = await run_job(name, ctx, dry_run=dry_run)
            except LabbotError as err:
                echo(f"{name}: failed: {err.user_message}")
                ok = False
                continue
            for line in summary.lines():
                echo(line)
            ok = ok and summary.ok
            if name == "expiry" and summary.acted and not dry_run:
                echo("expiry: labs now destroying are torn down by the running labbot's engine on its next poll")
    finally:
        if slack is not None:
            await slack.close(timeout=10)
        await rt.stop()
    return ok


def sweep_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what each job would do; change and notify nothing."),
    only: JobChoice | None = typer.Option(None, "--only", help="Run just this job."),
) -> None:
    """Run the expiry, health and orphan sweeps once (exit status 1 if one could not do all its work)."""
    settings = load_settings()
    require_strong_secret_key(settings)
    configure_logging(settings)
    names: list[JobName] = [only.value] if only is not None else list(JOB_NAMES)  # type: ignore[list-item]
    ok = asyncio.run(run_sweep(settings, names=names, dry_run=dry_run, echo=typer.echo))
    raise typer.Exit(0 if ok else 1)


async def pool_report(settings: Settings, echo: Callable[[str], None]) -> None:
    """Print each pooled profile's target, ready, building and failed unclaimed labs."""
    rt = Runtime(settings, notifiers=[LogNotifier()])
    try:
        await db.require_migrated(rt.db_engine)
        pools = await rt.service.pool.status()
        if not pools:
            echo(_("no profile asks for a warm pool (`pool: {size: N}` in a lab profile)"))
        for pool in pools:
            echo(_("{profile}: target {target}, ready {ready}, building {building}, failed {failed}").format(
                profile=pool.profile, target=pool.target, ready=pool.ready, building=pool.building,
                failed=pool.failed))
    finally:
        await rt.stop()


def pool_command() -> None:
    """The warm pools: per profile, the target size and its ready, building and failed labs."""
    settings = load_settings()
    configure_logging(settings)
    asyncio.run(pool_report(settings, typer.echo))
