"""Wiring of the Slack front end: the Bolt ``AsyncApp`` with its middleware, error handler and listeners, the
Web API clients, the Slack notifier, and the domain runtime, started and stopped together.

Nothing here decides anything; handlers live in ``handlers.slack``, messages in ``bot.blocks``, the domain in
``services``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import handlers.slack
from bot.metrics import Metrics, MetricsNotifier
from bot.slack.background import Background
from bot.slack.class_board import ClassBoard
from bot.slack.deps import SlackDeps
from bot.slack.errors import handle_app_error
from bot.slack.groups import SlackGroupDirectory
from bot.slack.locales import SlackLocales, answer_in_users_language
from bot.slack.middleware import DeliveryGuard, inject
from bot.slack.notifier import SlackNotifier
from bot.slack.pacing import SlackPacer
from config.profiles import LabProfile
from config.settings import Settings
from services.errors import ConfigError
from services.i18n import _
from services.labs.engine import LabEngine
from services.labs.notifier import FanOut
from services.labs.service import LabService

if TYPE_CHECKING:
    from services.labs.runtime import Runtime

log = logging.getLogger(__name__)


class Domain(Protocol):
    """The domain side the Slack front end drives (``services.labs.runtime.Runtime`` in production)."""

    service: LabService
    notifier: FanOut
    profiles: dict[str, LabProfile]
    sessions: async_sessionmaker[AsyncSession]
    engine: LabEngine

    async def start(self) -> None:
        """Check the database and resume unfinished labs."""

    async def stop(self) -> None:
        """Stop background work and close connections."""


class SchedulerControl(Protocol):
    """The scheduler this process runs (``services.scheduler.leader.Scheduler``): started after the domain,
    stopped before it, and asked for its state by /healthz."""

    async def start(self) -> None:
        """Start leading (SQLite) or standing for election (PostgreSQL); returns at once."""

    async def stop(self) -> None:
        """Stop the sweeps and give up the leadership."""

    def status(self) -> dict[str, Any]:
        """At least ``{"running": bool}``."""


def build_bolt_app(*, deps: SlackDeps, client: AsyncWebClient, signing_secret: str | None) -> AsyncApp:
    """The Bolt app: delivery de-duplication, dependency injection, one error handler, every listener."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=signing_secret is not None,  # Socket Mode has no signatures
        name="labbot",
    )
    app.use(DeliveryGuard(deps.service.sessions))
    app.use(inject(deps))
    app.use(answer_in_users_language(SlackLocales(client)))
    app.error(handle_app_error)
    handlers.slack.register(app)
    return app


def build_domain(settings: Settings, metrics: Metrics) -> Runtime:
    """The production runtime, with lab-platform calls counted in /metrics."""
    from services.labs.runtime import Runtime

    return Runtime(settings, platform_transport=metrics.zstack_transport())


def build_scheduler(domain: Runtime) -> SchedulerControl:
    """The expiry, health and orphan sweeps of ``domain``, leader-elected as in ``labbot worker``.

    Its notices go through the domain's fan-out, so once ``SlackBot.start`` has added the Slack notifier,
    expiry warnings, destroys at expiry, health changes and orphan reports reach the channel from this process.
    """
    from services.scheduler.leader import Scheduler

    return Scheduler.for_runtime(domain)


class SlackBot:
    """The running Slack front end (``await start()``, then serve ``app`` over HTTP or Socket Mode)."""

    def __init__(
        self,
        settings: Settings,
        domain: Domain,
        *,
        metrics: Metrics | None = None,
        scheduler: SchedulerControl | None = None,
        card_interval: float = 2.0,
        pacer: SlackPacer | None = None,
    ) -> None:
        settings.require_slack()
        if settings.slack_app_token is None and settings.slack_signing_secret is None:
            raise ConfigError(_("SLACK_SIGNING_SECRET is required in HTTP mode (when SLACK_APP_TOKEN is not set)"))
        self.settings, self.domain = settings, domain
        self.metrics = metrics or Metrics()
        self.scheduler = scheduler
        self._card_interval, self._pacer = card_interval, pacer
        self._session: aiohttp.ClientSession | None = None
        self.app: AsyncApp
        self.client: AsyncWebClient
        self.notifier: SlackNotifier
        self.deps: SlackDeps

    async def start(self) -> None:
        """Build the clients and the app (inside the running loop, as aiohttp needs), then start the domain."""
        assert self.settings.slack_bot_token is not None  # require_slack() checked it
        token = self.settings.slack_bot_token.get_secret_value()
        self._session = aiohttp.ClientSession(trace_configs=[self.metrics.slack_trace()])
        base_url = self.settings.slack_api_url
        # Listeners' calls (views.open, views.publish, ephemerals) retry 429s after Retry-After inside slack_sdk.
        self.client = AsyncWebClient(token=token, base_url=base_url, session=self._session, retry_handlers=[
            AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=3)])
        # The notifier paces itself and handles 429s and network errors in its outbox, so its client does not.
        notifier_client = AsyncWebClient(token=token, base_url=base_url, session=self._session, retry_handlers=[])
        self.notifier = SlackNotifier(client=notifier_client, labs=self.domain.service,
                                      default_channel=self.settings.channel, min_interval=self._card_interval,
                                      pacer=self._pacer)
        self.domain.notifier.add(self.notifier)
        self.domain.notifier.add(MetricsNotifier(self.metrics))
        self.class_board = ClassBoard(client=self.client, labs=self.domain.service,
                                      min_interval=self._card_interval)
        self.domain.notifier.add(self.class_board)
        self.deps = SlackDeps(service=self.domain.service, settings=self.settings, profiles=self.domain.profiles,
                              metrics=self.metrics, background=Background(self.metrics),
                              class_board=self.class_board)
        secret = self.settings.slack_signing_secret
        self.domain.service.group_directory = SlackGroupDirectory(self.client)
        self.app = build_bolt_app(deps=self.deps, client=self.client,
                                  signing_secret=secret.get_secret_value() if secret else None)
        await self.domain.start()
        if self.scheduler is not None:
            await self.scheduler.start()
        log.info("Slack front end started (%s mode)", "Socket" if self.settings.slack_app_token else "HTTP")

    async def stop(self) -> None:
        """Stop the sweeps, finish in-flight requests and card updates, stop the domain, close the HTTP session."""
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.deps.background.drain(timeout=15)
        await self.notifier.close(timeout=10)
        await self.class_board.close(timeout=5)
        await self.domain.stop()
        if self._session is not None:
            await self._session.close()

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """Database reachable, scheduler state, work in progress: what /healthz reports."""
        status: dict[str, Any] = {}
        healthy = True
        try:
            async with asyncio.timeout(3), self.domain.sessions() as session:
                await session.execute(text("SELECT 1"))
            status["database"] = "ok"
        except Exception as err:  # any failure means "not healthy"; the reason is logged, not shown
            log.warning("health check: database unreachable: %s", type(err).__name__)
            status["database"] = "unreachable"
            healthy = False
        if self.scheduler is None:
            status["scheduler"] = {"running": False, "configured": False}
        else:
            status["scheduler"] = self.scheduler.status()
            healthy = healthy and bool(status["scheduler"].get("running"))
        status["labs_in_progress"] = len(self.domain.engine.busy_labs)
        status["slack_tasks"] = self.deps.background.running
        return healthy, status
