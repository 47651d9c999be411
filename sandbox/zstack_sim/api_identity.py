"""Handlers: login and sessions, management-node health, tags and every Query API."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.zstack_sim import query
from sandbox.zstack_sim.context import Ctx, api
from sandbox.zstack_sim.errors import ApiError, argerr, operr
from sandbox.zstack_sim.store import ADMIN_UUID, KINDS, new_uuid, zstack_date
from sandbox.zstack_sim.views import QUERIES, rows, strip_nulls

log = logging.getLogger(__name__)

VERSION = "5.2.1"


@api("LogInByAccount")
async def log_in_by_account(ctx: Ctx) -> dict[str, Any]:
    """Check the account name and the password's SHA-512 hex; open a session."""
    name, password = ctx.required("accountName"), ctx.required("password")
    account = ctx.state.accounts.get(name)
    if account is None or account[1] != str(password).lower():
        raise ApiError("ID.1000", "wrong account name or password")
    session = ctx.state.open_session(account[0])
    now = datetime.now(UTC)
    return {"inventory": {
        "uuid": session.uuid, "accountUuid": account[0], "userUuid": account[0], "userType": "AccountVO",
        "expiredDate": zstack_date(now + timedelta(seconds=ctx.state.session_timeout)), "createDate": zstack_date(now),
    }}


@api("UpdateAccount")
async def update_account(ctx: Ctx) -> dict[str, Any]:
    """Change an account's password (stored as given: the SHA-512 hex login compares with), name or description.
    The admin may update any account, except the admin's name; an account only itself (zstackio/zstack
    identity ``AccountBase``/``AccountManagerImpl``: ``validate`` and ``handle(APIUpdateAccountMsg)``)."""
    uuid = str(ctx.param("uuid") or ctx.account_uuid or "")
    name = next((n for n, (u, _) in ctx.state.accounts.items() if u == uuid), None)
    if name is None:
        raise ApiError("SYS.1003", f"invalid field[uuid], resource[uuid:{uuid}, type:AccountVO] not found")
    new_name, password = ctx.text("name", max_len=255), ctx.text("password", max_len=255)
    if ctx.account_uuid != ADMIN_UUID and ctx.account_uuid != uuid:
        raise operr(f"account[uuid: {ctx.account_uuid}] is a normal account, it cannot reset the password of another "
                    f"account[uuid: {uuid}]")
    if new_name is not None and uuid == ADMIN_UUID:
        raise operr("the name of admin account cannot be updated")
    await ctx.work()
    stored = ctx.state.accounts.pop(name)
    name = new_name or name
    ctx.state.accounts[name] = (uuid, password if password is not None else stored[1])
    return {"inventory": {"uuid": uuid, "name": name, "description": ctx.text("description", max_len=2048),
                          "type": "SystemAdmin" if uuid == ADMIN_UUID else "Normal", "createDate": zstack_date(),
                          "lastOpDate": zstack_date()}}


@api("LogOut")
async def log_out(ctx: Ctx) -> dict[str, Any]:
    """Forget a session (unknown ones too: logging out twice is not an error)."""
    ctx.state.sessions.pop(str(ctx.param("sessionUuid", "")), None)
    return {}


@api("ValidateSession")
async def validate_session(ctx: Ctx) -> dict[str, Any]:
    """Whether a session is alive."""
    return {"valid": ctx.state.live_session(str(ctx.required("sessionUuid"))) is not None}


@api("GetVersion")
async def get_version(ctx: Ctx) -> dict[str, Any]:
    """The management node's version."""
    return {"version": VERSION}


@api("GetCurrentTime")
async def get_current_time(ctx: Ctx) -> dict[str, Any]:
    """The node's clock."""
    now = time.time()
    return {"currentTime": {"MillisecondsTime": int(now * 1000), "SecondsTime": int(now)}}


@api("IsReadyToGo")
async def is_ready_to_go(ctx: Ctx) -> dict[str, Any]:
    """200 ``{}`` when ready; SYS.1010 while the node is still starting."""
    if not ctx.state.ready:
        raise ApiError("SYS.1010", "management node is not ready yet")
    return {}


@api("CreateUserTag")
async def create_user_tag(ctx: Ctx) -> dict[str, Any]:
    """Tag an existing resource."""
    resource_uuid, resource_type, tag = ctx.required("resourceUuid"), ctx.required("resourceType"), ctx.required("tag")
    kind = next((k for k, vo in KINDS.items() if vo == resource_type), None)
    if kind is None:
        raise argerr(f"resourceType[{resource_type}] is not a valid resource type")
    ctx.state.require(kind, resource_uuid, "resourceUuid")
    record = {"uuid": new_uuid(), "resourceUuid": resource_uuid, "resourceType": resource_type, "tag": tag,
              "type": "User", "inherent": False, "createDate": zstack_date(), "lastOpDate": zstack_date()}
    ctx.state.tags[record["uuid"]] = record
    return {"inventory": dict(record)}


@api("DeleteTag")
async def delete_tag(ctx: Ctx) -> dict[str, Any]:
    """Remove a tag."""
    uuid = str(ctx.required("uuid"))
    if uuid not in ctx.state.tags:
        raise ApiError("SYS.1003", f"invalid field[uuid], resource[uuid:{uuid}, type:TagVO] not found")
    del ctx.state.tags[uuid]
    return {}


async def run_query(ctx: Ctx) -> dict[str, Any]:
    """Any Query API: conditions, sort, paging, fields and counts over the rendered inventories."""
    kind, items = rows(ctx.state, ctx.action)
    return strip_nulls(query.apply(ctx.state, kind, items, ctx.query))


for _action in QUERIES:
    api(_action)(run_query)
