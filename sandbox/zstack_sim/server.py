"""Serving the simulator: a real uvicorn server in the running event loop, for tests, the demo and the CLI.

    async with serve_simulator("nested") as sim:
        async with ZStackClient(sim.url, "admin", SecretStr("password")) as zs: ...
        assert sim.state.count("vm") == 1

Addresses are limited to loopback, 198.18.0.0/15 (the sandbox's namespaces) and 0.0.0.0, which is only
meant for use inside a network namespace (the nested simulator on VM2).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette

from sandbox.zstack_sim.app import DroppedConnection, Simulator, create_app
from sandbox.zstack_sim.faults import Faults
from sandbox.zstack_sim.store import SimState
from services.errors import ConfigError

log = logging.getLogger(__name__)

_ALLOWED = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("198.18.0.0/15"),
            ipaddress.ip_network("::1/128"), ipaddress.ip_network("0.0.0.0/32"))


class _HideInjectedDrops(logging.Filter):
    """uvicorn logs every exception after a response started; injected drops are expected, not errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop records about injected drops; keep everything else."""
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


def quiet_injected_drops() -> None:
    """Install (once) the filter that keeps injected connection drops out of uvicorn's error log."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideInjectedDrops) for f in logger.filters):
        logger.addFilter(_HideInjectedDrops())


def check_bind_address(host: str) -> str:
    """Refuse addresses outside loopback, 198.18.0.0/15 and 0.0.0.0 (ConfigError names the rule)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"simulator host {host!r} must be an IP address") from None
    if not any(address in network for network in _ALLOWED):
        raise ConfigError(f"simulator host {host} is not allowed: use 127.0.0.0/8, 198.18.0.0/15, or 0.0.0.0 "
                          "inside a network namespace")
    return host


def connect_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to ``host``."""
    return "127.0.0.1" if host == "0.0.0.0" else host  # noqa: S104 - comparing, not binding


@dataclass
class RunningSimulator:
    """A served simulator: its base URL (ending in ``/zstack/v1``) and its model."""

    url: str
    host: str
    port: int
    app: Starlette

    @property
    def sim(self) -> Simulator:
        """The simulator behind the app."""
        sim: Simulator = self.app.state.sim
        return sim

    @property
    def state(self) -> SimState:
        """The in-memory model, for assertions (count of VMs, volumes, jobs ...)."""
        return self.sim.state

    @property
    def faults(self) -> Faults:
        """The live fault settings; change them mid-run with ``faults.set(...)``."""
        return self.sim.faults


async def start_server(app: Starlette, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Start uvicorn for ``app`` in this loop; returns the server, its task and the bound port."""
    quiet_injected_drops()
    config = uvicorn.Config(app, host=check_bind_address(host), port=port, log_level="warning", access_log=False,
                            lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name=f"zstack-sim-{host}:{port}")
    async with asyncio.timeout(15):
        while not server.started:
            if task.done():
                task.result()  # raises why it could not start (port taken ...)
                raise ConfigError(f"the simulator on {host}:{port} stopped while starting")
            await asyncio.sleep(0.005)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, task, bound


@contextlib.asynccontextmanager
async def serve_simulator(role: Literal["outer", "nested"], host: str = "127.0.0.1", port: int = 0,
                          **kwargs: Any) -> AsyncIterator[RunningSimulator]:
    """Serve ``create_app(role, **kwargs)`` on ``host:port`` (0 = any free port) until the block ends."""
    app = create_app(role, **kwargs)
    server, task, bound = await start_server(app, host, port)
    url_host = connect_host(host)
    try:
        yield RunningSimulator(url=f"http://{url_host}:{bound}/zstack/v1", host=host, port=bound, app=app)
    finally:
        server.should_exit = True
        await task
