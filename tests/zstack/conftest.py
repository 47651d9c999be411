"""Fixtures for the ZStack client and simulator tests: real simulators on loopback, clients that poll fast.

The client is tested over real HTTP against the simulator (no mocking of httpx); only the poll and retry
schedules are shortened, so a test spends milliseconds, not the production 0.2 s, waiting per job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from services.zstack import PollPolicy, RetryPolicy, ZStackClient

FAST_POLL = PollPolicy(initial=0.005, factor=1.5, cap=0.05)
FAST_RETRY = RetryPolicy(attempts=6, initial=0.005, factor=2.0, cap=0.05)
PASSWORD = SecretStr("password")

ClientFactory = Callable[..., ZStackClient]


@pytest.fixture
async def nested_sim() -> AsyncIterator[RunningSimulator]:
    """A fresh nested ZStack (admin / password, nothing else) on a free loopback port."""
    async with serve_simulator("nested") as sim:
        yield sim


@pytest.fixture
async def outer_sim() -> AsyncIterator[RunningSimulator]:
    """A lab platform seeded from config/profiles on a free loopback port."""
    async with serve_simulator("outer") as sim:
        yield sim


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """Build clients with fast polling; every client made is closed (and logged out) after the test."""
    made: list[ZStackClient] = []

    def build(url: str, password: SecretStr = PASSWORD, **kwargs: Any) -> ZStackClient:
        kwargs.setdefault("poll_policy", FAST_POLL)
        kwargs.setdefault("retry_policy", FAST_RETRY)
        client = ZStackClient(url, "admin", password, **kwargs)
        made.append(client)
        return client

    yield build
    for client in made:
        await client.aclose()


@pytest.fixture
async def nested(nested_sim: RunningSimulator, make_client: ClientFactory) -> ZStackClient:
    """A client of the nested simulator."""
    return make_client(nested_sim.url)


@pytest.fixture
async def outer(outer_sim: RunningSimulator, make_client: ClientFactory) -> ZStackClient:
    """A client of the outer simulator."""
    return make_client(outer_sim.url)


async def login_headers(base_url: str, account: str = "admin", password: str = "password") -> dict[str, str]:
    """A session of the test's own, made with the real login call (``PUT /accounts/login``), for raw HTTP."""
    import hashlib

    import httpx

    body = {"logInByAccount": {"accountName": account, "password": hashlib.sha512(password.encode()).hexdigest()}}
    async with httpx.AsyncClient(base_url=base_url) as http:
        answer = (await http.put("/accounts/login", json=body)).json()
    return {"Authorization": f"OAuth {answer['inventory']['uuid']}"}
