"""Shared building blocks of the typed client methods: get by uuid, find by name, idempotent create.

An idempotent create takes a caller-chosen ``resource_uuid``: it first asks whether a resource with that uuid
exists (a previous attempt, perhaps from before a restart, may have made it) and returns it; otherwise it
creates with ``resourceUuid``. If the create fails but the resource now exists, some attempt with our uuid
made it, so it is ours and is returned too. ZStack rolls a failed create back, so existence means success.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr

from services.zstack.errors import ZStackAmbiguousError, ZStackError, ZStackNotFoundError, ZStackTimeoutError
from services.zstack.queries import QueriesMixin
from services.zstack.query import Cond, Query, eq
from services.zstack.wire import new_uuid

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_ZSTACK_UUID = re.compile(r"^[0-9a-f]{8}[0-9a-f]{4}[1-5][0-9a-f]{3}[89ab][0-9a-f]{3}[0-9a-f]{12}$")


def check_resource_uuid(value: str) -> str:
    """Refuse (ValueError) a uuid ZStack would refuse: 32 lower-case hex digits of a v1-v5 UUID, no dashes."""
    if not _ZSTACK_UUID.fullmatch(value):
        raise ValueError(f"resource uuid {value!r} is not a ZStack uuid (uuid4 hex without dashes)")
    return value


class Resources:
    """What every area of the client (``InfraApi``, ``StorageApi``, ``NetworkApi``, ``ComputeApi``) builds on:
    typed reads and idempotent creates over one management node's ``call``/``query`` (``api``)."""

    def __init__(self, api: QueriesMixin) -> None:
        self.api = api

    async def _get(self, query_action: str, model: type[M], uuid: str, *, deadline: float | None = None) -> M | None:
        raw = await self.api.get_raw(query_action, uuid, deadline=deadline)
        return model.model_validate(raw) if raw is not None else None

    async def _require(self, query_action: str, model: type[M], uuid: str, what: str, *,
                       deadline: float | None = None) -> M:
        found = await self._get(query_action, model, uuid, deadline=deadline)
        if found is None:
            raise ZStackNotFoundError("SYS.1003", "A resource can not be found", f"{what}[uuid:{uuid}] not found",
                                      action=query_action)
        return found

    async def _list(self, query_action: str, model: type[M], conditions: Sequence[Cond | str] = (), *,
                    deadline: float | None = None) -> list[M]:
        raw = await self.api.query(query_action, Query(conditions=tuple(conditions)), deadline=deadline)
        return [model.model_validate(item) for item in raw]

    async def _find_by_name(self, query_action: str, model: type[M], name: str, what: str, *,
                            usable: Callable[[M], bool] | None = None, extra: Sequence[Cond] = (),
                            deadline: float | None = None) -> M | None:
        """The one resource named ``name`` (None if none). Several: the usable ones decide; still several
        is a ZStackAmbiguousError, since silently picking one could build a lab on the wrong thing."""
        found = await self._list(query_action, model, [eq("name", name), *extra], deadline=deadline)
        if usable is not None and len(found) > 1:
            found = [item for item in found if usable(item)] or found
        if len(found) > 1:
            raise ZStackAmbiguousError(
                "LABBOT.AMBIGUOUS", f"{len(found)} {what}s are named {name!r}",
                "rename or delete the extra ones so that the name is unique", action=query_action)
        return found[0] if found else None

    async def _create(
        self,
        action: str,
        query_action: str,
        model: type[M],
        params: Mapping[str, Any],
        *,
        resource_uuid: str | None,
        system_tags: Sequence[str] | None = None,
        user_tags: Sequence[str] | None = None,
        deadline: float | None = None,
        secrets: Sequence[SecretStr] = (),
    ) -> M:
        uuid = check_resource_uuid(resource_uuid) if resource_uuid else new_uuid()
        existing = await self._get(query_action, model, uuid, deadline=deadline)
        if existing is not None:
            log.info("ZStack %s: %s already exists; not creating it again", action, uuid)
            return existing
        try:
            result = await self.api.call(action, {**params, "resourceUuid": uuid}, system_tags=system_tags,
                                     user_tags=user_tags, deadline=deadline, secrets=secrets)
        except ZStackTimeoutError:
            raise
        except ZStackError as err:
            try:
                found = await self._get(query_action, model, uuid, deadline=deadline)
            except ZStackError:
                found = None
            if found is None:
                raise
            log.info("ZStack %s failed (%s) but %s exists: an earlier attempt made it", action, err.code, uuid)
            return found
        inventory = result.get("inventory")
        if not isinstance(inventory, Mapping):
            raise ZStackError("sdk.1002", f"{action} answered without an inventory", action=action)
        return model.model_validate(inventory)
