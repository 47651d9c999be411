"""``labbot worker``: a headless replica, the lab engine plus the scheduler, with no Slack front end.

Several workers (and ``labbot run``) can share one PostgreSQL database: each builds and destroys the labs whose
lease it wins, and the one that wins the advisory lock runs the sweeps. Notices are logged; with
``SLACK_BOT_TOKEN`` set they are also posted to Slack (outbound only: cards, threads, warnings), because the
replica that builds a lab, or leads the scheduler, is the one that has something to say about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Callable
from typing import Any

import typer

from bot.logs import configure_logging as safe_logging
from config.settings import Settings, load_settings
from services.crypto import require_strong_secret_key
from services.errors import ConfigError
from services.labs.engine import Job, LabEngine
from services.labs.notifier import Notice, NoticeKind
from services.labs.runtime import Runtime

log = logging.getLogger(__name__)

JobsFactory = Callable[[Runtime], tuple[Job, Job]]


class LogNotifier:
    """Notices as log lines (progress at DEBUG): the headless processes' record of what happened."""

    async def notify(self, notice: Notice) -> None:
        """Log one notice with the lab, the step and who caused it."""
        level = logging.DEBUG if notice.kind == NoticeKind.STEP_PROGRESS else logging.INFO
        step = f" {notice.step.name}" if notice.step is not None else ""
        actor = f" (by {notice.actor})" if notice.actor else ""
        text = f": {notice.text}" if notice.text else ""
        log.log(level, "lab %s: %s%s%s%s", notice.lab.name, notice.kind.value, step, actor, text)


def configure_logging(settings: Settings) -> None:
    """One log format for the headless commands; libraries' per-call chatter (every HTTP request, every job
    run, Alembic's plugin set-up, slack_sdk's request bodies) only from WARNING, so labbot's own lines stay
    readable and message bodies stay out of the log."""
    safe_logging(settings.log_level)
    for chatty in ("apscheduler", "httpx", "alembic", "slack_sdk"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))


def attach_slack(rt: Runtime, settings: Settings) -> Any | None:
    """Post the runtime's notices to Slack too when a bot token is configured; returns the notifier to close."""
    if settings.slack_bot_token is None:
        return None
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.slack.notifier import SlackNotifier

    client = AsyncWebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url,
                            retry_handlers=[])  # the notifier's outbox paces and retries itself
    notifier = SlackNotifier(client=client, labs=rt.service, default_channel=settings.channel)
    rt.notifier.add(notifier)
    return notifier


def load_jobs_factory(spec: str) -> JobsFactory:
    """``package.module:callable`` → the callable; a bad spec is a ConfigError that says what was wrong."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--jobs must be package.module:callable, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot load --jobs {spec}: {err}") from None
    if not callable(factory):
        raise ConfigError(f"--jobs {spec} is not callable")
    return factory  # type: ignore[no-any-return]


def use_jobs(rt: Runtime, factory: JobsFactory, poll_seconds: float) -> None:
    """Replace the engine's build and destroy jobs (same process name, leases and polling) with the factory's."""
    build, destroy = factory(rt)
    rt.engine = LabEngine(sessions=rt.sessions, settings=rt.settings, notifier=rt.notifier, build=build,
                          destroy=destroy, owner=rt.engine.owner, poll_interval=poll_seconds)
    rt.lifecycle.kick = rt.engine.kick


async def run_worker(settings: Settings, *, poll_seconds: float, jobs: str | None = None,
                     stop: asyncio.Event | None = None) -> None:
    """Run the engine and the scheduler until SIGINT/SIGTERM (or ``stop``), then shut down cleanly."""
    from services.scheduler.leader import Scheduler

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    rt = Runtime(settings, notifiers=[LogNotifier()], engine_poll_interval=poll_seconds)
    if jobs is not None:
        use_jobs(rt, load_jobs_factory(jobs), poll_seconds)
    slack = attach_slack(rt, settings)
    scheduler = Scheduler.for_runtime(rt)
    try:
        await rt.start()
        await scheduler.start()
        log.info("labbot worker %s running (engine + scheduler)", rt.engine.owner)
        await stop.wait()
    finally:
        log.info("labbot worker %s stopping", rt.engine.owner)
        await scheduler.stop()
        if slack is not None:
            await slack.close(timeout=10)
        await rt.stop()


def worker_command(
    poll_seconds: float = typer.Option(10.0, min=0.1, help="How often the engine looks for labs with work "
                                       "(new ones, and those of processes that died)."),
    jobs: str | None = typer.Option(None, "--jobs", hidden=True, help="package.module:callable taking the runtime "
                                    "and returning (build, destroy) jobs that replace the lab pipeline's "
                                    "(rehearsals of the scale-out path, tests)."),
) -> None:
    """Run a headless labbot replica: the lab engine plus the scheduler (leader-elected on PostgreSQL)."""
    settings = load_settings()
    require_strong_secret_key(settings)
    configure_logging(settings)
    asyncio.run(run_worker(settings, poll_seconds=poll_seconds, jobs=jobs))
