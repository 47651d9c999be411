"""Login, sessions, expiry and re-login, logout, and the REST layer's Authorization rules."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import httpx
import pytest
from pydantic import SecretStr

from sandbox.zstack_sim.server import RunningSimulator, serve_simulator
from services.zstack import ZStackAuthError, ZStackClient, ZStackSessionError
from tests.zstack.conftest import FAST_POLL, FAST_RETRY, ClientFactory


def _digest(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()


async def test_login_sends_the_sha512_hex_and_logout_ends_the_session(nested_sim: RunningSimulator) -> None:
    async with httpx.AsyncClient(base_url=nested_sim.url) as http:
        plain = await http.put("/accounts/login", json={"logInByAccount": {"accountName": "admin",
                                                                            "password": "password"}})
        hashed = await http.put("/accounts/login", json={"logInByAccount": {"accountName": "admin",
                                                                             "password": _digest("password")}})
    assert plain.status_code == 503 and plain.json()["error"]["code"] == "ID.1000"
    assert hashed.status_code == 200 and len(hashed.json()["inventory"]["uuid"]) == 32

    client = ZStackClient(nested_sim.url, "admin", SecretStr("password"), poll_policy=FAST_POLL)
    async with client:
        await client.login()
        assert client.stats.logins == 1
        assert len(nested_sim.state.sessions) == 2
    assert len(nested_sim.state.sessions) == 1  # ours was logged out, the raw one above stays


async def test_login_is_lazy_and_happens_once_for_concurrent_calls(nested: ZStackClient) -> None:
    assert nested.stats.logins == 0
    zones = await asyncio.gather(*(nested.infra.create_zone(f"z{i}") for i in range(5)))
    assert len({z.uuid for z in zones}) == 5
    assert nested.stats.logins == 1


async def test_wrong_password_is_an_auth_error_that_names_no_secret(nested_sim: RunningSimulator,
                                                                    make_client: ClientFactory,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(nested_sim.url, password=SecretStr("hunter2-wrong"))
    with pytest.raises(ZStackAuthError) as caught:
        await client.infra.create_zone("z")
    error = caught.value
    assert (error.code, error.description, error.details) == (
        "ID.1000", "Unable to authenticate a user", "wrong account name or password")
    assert error.system == "zstack" and error.http_status == 503
    for text in (str(error), error.user_message, caplog.text):
        assert "hunter2-wrong" not in text and _digest("hunter2-wrong") not in text


async def test_expired_session_is_renewed_once_for_sync_and_async_calls(nested_sim: RunningSimulator,
                                                                       nested: ZStackClient) -> None:
    await nested.infra.create_zone("before")
    assert len(nested_sim.state.sessions) == 1
    nested_sim.state.expire_sessions()
    assert await nested.get_version() == "5.2.1"  # needs no session: no renewal yet
    zone = await nested.infra.create_zone("after")  # async: 202, then ID.1001 on the poll, then renewed and re-sent
    # the server saw a second login, and the re-sent call went in under it
    assert nested.stats.relogins == 1 and len(nested_sim.state.sessions) == 2
    nested_sim.state.expire_sessions()
    assert (await nested.query("QueryZone", [])) and nested.stats.relogins == 2  # sync: 503 ID.1001 at once
    assert nested_sim.state.executed("CreateZone") == 2
    assert nested_sim.state.count("zone") == 2 and zone.name == "after"


async def test_a_session_that_keeps_failing_is_reported() -> None:
    async with serve_simulator("nested", session_timeout=0.0) as instant:
        client = ZStackClient(instant.url, "admin", SecretStr("password"), poll_policy=FAST_POLL)
        async with client:
            with pytest.raises(ZStackSessionError) as caught:
                await client.infra.create_zone("z")
    assert caught.value.code == "ID.1001" and client.stats.relogins == 1


async def test_the_rest_layer_checks_the_authorization_header(nested_sim: RunningSimulator) -> None:
    async with httpx.AsyncClient(base_url=nested_sim.url) as http:
        missing = await http.get("/zones")
        wrong_scheme = await http.get("/zones", headers={"Authorization": "Bearer x"})
        bad_key = await http.get("/zones", headers={"Authorization": "ZStack nonsense"})
        unknown = await http.get("/zones", headers={"Authorization": "OAuth 0123456789abcdef0123456789abcdef"})
        accepted = await http.post("/zones", json={"params": {"name": "z"}},
                                   headers={"Authorization": "OAuth 0123456789abcdef0123456789abcdef"})
        polled = await http.get(accepted.json()["location"].split("/zstack/v1")[1])
        for _ in range(100):
            if polled.status_code != 202:
                break
            await asyncio.sleep(0.01)
            polled = await http.get(accepted.json()["location"].split("/zstack/v1")[1])
        open_api = await http.get("/management-nodes/ready")
    assert (missing.status_code, missing.text) == (400, "missing header 'Authorization'")
    assert (wrong_scheme.status_code, wrong_scheme.text) == (400, "Authorization type must be 'OAuth'")
    assert bad_key.status_code == 400 and "ZStack AccessKeyId:Signature" in bad_key.text
    assert unknown.status_code == 503 and unknown.json()["error"]["code"] == "ID.1001"
    assert accepted.status_code == 202  # async: accepted first, refused on the poll
    assert polled.status_code == 503 and polled.json()["error"]["details"] == "Session expired"
    assert open_api.status_code == 200 and open_api.json() == {}
    assert nested_sim.state.count("zone") == 0


async def test_session_uuid_never_reaches_logs(nested_sim: RunningSimulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = ZStackClient(nested_sim.url, "admin", SecretStr("password"), poll_policy=FAST_POLL,
                          retry_policy=FAST_RETRY)
    async with client:
        await client.infra.create_zone("z")
        [session] = nested_sim.state.sessions  # the one session the server gave the client
    assert "accounts/sessions/***" in caplog.text  # httpx's request log of the logout, redacted
    assert session not in caplog.text


async def test_the_admin_password_is_changed_with_update_account(nested_sim: RunningSimulator,
                                                                 make_client: ClientFactory) -> None:
    """UpdateAccount stores the SHA-512 hex it gets: logins then need the new password, and the old one fails."""
    admin = make_client(nested_sim.url)
    new = SecretStr("lab-9f2c-Secret")
    await admin.change_password(new)
    assert admin.account_uuid == "36c27e8ff05c4780bf6d2fa65700f22e"
    assert await admin.get_version()  # the session that changed it stays valid
    with pytest.raises(ZStackAuthError):
        await make_client(nested_sim.url).login()
    fresh = make_client(nested_sim.url, password=new)
    await fresh.login()
    assert fresh.stats.logins == 1
