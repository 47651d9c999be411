"""What an API handler gets (``Ctx``), the handler registry, and simulated durations.

A handler is ``async def handler(ctx) -> dict`` registered with ``@api("ActionName")``; it returns the API's
result body (``{"inventory": ...}``, ``{}`` ...) or raises ``ApiError``. ``await ctx.work()`` spends the
action's simulated duration (nominal seconds times ``latency_scale``; 0 in tests).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.zstack_sim.errors import ApiError, argerr, missing
from sandbox.zstack_sim.hooks import NestedHooks, OuterHooks
from sandbox.zstack_sim.store import KINDS, SimState, new_uuid
from services.zstack.routes import ROUTES, Route

log = logging.getLogger(__name__)

_ZSTACK_UUID = re.compile(r"^[0-9a-f]{8}[0-9a-f]{4}[1-5][0-9a-f]{3}[89ab][0-9a-f]{3}[0-9a-f]{12}$")

# Nominal seconds each action takes on a real management node (order of magnitude, from experience:
# hosts are deployed with ansible, images downloaded, VMs booted). Anything absent takes DEFAULT_SECONDS.
DURATIONS: dict[str, float] = {
    "CreateVmInstance": 25.0, "StartVmInstance": 15.0, "StopVmInstance": 10.0, "DestroyVmInstance": 5.0,
    "ExpungeVmInstance": 3.0, "CreateDataVolume": 1.0, "AttachDataVolumeToVm": 3.0, "DetachDataVolumeFromVm": 2.0,
    "DeleteDataVolume": 1.0, "ExpungeDataVolume": 2.0, "AddKVMHost": 90.0, "ReconnectHost": 30.0,
    "AddImage": 60.0, "AddImageStoreBackupStorage": 30.0, "AddIscsiServer": 5.0, "AttachIscsiServerToCluster": 10.0,
    "AddSharedBlockGroupPrimaryStorage": 30.0, "AttachPrimaryStorageToCluster": 20.0,
}
DEFAULT_SECONDS = 0.5
SYNC_SECONDS = 0.02
# apiTimeout (ms) the 202 announces; ZStack derives it per message from its global API timeout settings.
API_TIMEOUTS_MS: dict[str, int] = {"AddImage": 10_800_000, "AddKVMHost": 3_600_000, "CreateVmInstance": 3_600_000}
DEFAULT_API_TIMEOUT_MS = 1_800_000


@dataclass
class Timing:
    """Simulated durations: nominal seconds per action (``overrides`` replace the defaults), times
    ``latency_scale`` (0 = instant, 1 = as long as a real node takes)."""

    latency_scale: float = 0.0
    overrides: dict[str, float] = field(default_factory=dict)
    api_timeouts_ms: dict[str, int] = field(default_factory=dict)

    def seconds(self, action: str, sync: bool = False) -> float:
        """How long ``action`` takes in this simulator (real seconds)."""
        nominal = self.overrides.get(action, SYNC_SECONDS if sync else DURATIONS.get(action, DEFAULT_SECONDS))
        return nominal * self.latency_scale

    def api_timeout_ms(self, action: str) -> int:
        """The apiTimeout announced for ``action``."""
        return self.api_timeouts_ms.get(action, API_TIMEOUTS_MS.get(action, DEFAULT_API_TIMEOUT_MS))


@dataclass
class Ctx:
    """One API invocation as a handler sees it."""

    state: SimState
    route: Route
    params: dict[str, Any]
    system_tags: list[str]
    user_tags: list[str]
    outer_hooks: OuterHooks
    nested_hooks: NestedHooks
    timing: Timing
    query: dict[str, list[str]] = field(default_factory=dict)  # the raw query string (GET/DELETE)
    account_uuid: str | None = None
    job_uuid: str | None = None

    @property
    def action(self) -> str:
        """The API's name."""
        return self.route.action

    async def work(self, share: float = 1.0) -> None:
        """Spend ``share`` of this action's simulated duration."""
        seconds = self.timing.seconds(self.action, sync=not self.route.need_poll) * share
        if seconds > 0:
            await asyncio.sleep(seconds)

    def param(self, name: str, default: Any = None) -> Any:
        """A parameter, or ``default`` when absent or null."""
        value = self.params.get(name)
        return default if value is None else value

    def required(self, name: str) -> Any:
        """A mandatory parameter (SYS.1007 when absent or empty)."""
        value = self.params.get(name)
        if value is None or value == "" or value == []:
            raise missing(name, self.action)
        return value

    def text(self, name: str, *, default: str | None = None, max_len: int = 255) -> str | None:
        """An optional string parameter, checked for type and length."""
        value = self.param(name, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise argerr(f"field[{name}] must be a string, but got {type(value).__name__}")
        if len(value) > max_len:
            raise argerr(f"field[{name}] exceeds the max length[{max_len} chars] of string")
        return value

    def integer(self, name: str, *, default: int | None = None, minimum: int | None = None) -> int | None:
        """An optional integer parameter (whole floats accepted, as Gson accepts them)."""
        value = self.param(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise argerr(f"field[{name}] must be an integer, but got {value!r}")
        if minimum is not None and value < minimum:
            raise argerr(f"field[{name}] must be in range of [{minimum}, {2**63 - 1}], but got {value}")
        return int(value)

    def choice(self, name: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
        """An optional enum parameter."""
        value = self.param(name, default)
        if value is not None and value not in allowed:
            raise argerr(f"valid value for field[{name}] are {list(allowed)}, but {value} found")
        return value

    def str_list(self, name: str) -> list[str]:
        """A list parameter (a single value from a query string counts as a one-element list)."""
        value = self.param(name, [])
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in values):
            raise argerr(f"field[{name}] must be a list of strings")
        return values

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean parameter (JSON true/false, or "true"/"false" from a query string)."""
        value = self.param(name, default)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise argerr(f"field[{name}] must be a boolean, but got {value!r}")
        return value

    def uuid_list(self, name: str, kind: str, *, required: bool = True) -> list[dict[str, Any]]:
        """A list of uuids, each naming a resource of ``kind``."""
        value = self.required(name) if required else self.param(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise argerr(f"field[{name}] must be a list of uuids")
        return [self.state.require(kind, v, name) for v in value]

    def ref(self, name: str, kind: str, *, required: bool = True) -> dict[str, Any] | None:
        """The resource a uuid parameter names (SYS.1003 when it names nothing)."""
        uuid = self.required(name) if required else self.param(name)
        return self.state.require(kind, uuid, name) if uuid else None

    def resource_uuid(self) -> str:
        """The caller's ``resourceUuid`` (validated) or a fresh uuid."""
        value = self.param("resourceUuid")
        if value is None:
            return new_uuid()
        if not isinstance(value, str) or not _ZSTACK_UUID.match(value):
            raise argerr(
                f"resourceUuid[{value}] is not a valid uuid. A valid uuid is a UUID(v4 recommended) with '-' "
                "stripped. see http://en.wikipedia.org/wiki/Universally_unique_identifier for format of UUID, the "
                "regular expression ZStack uses to validate a UUID is "
                "'[0-9a-f]{8}[0-9a-f]{4}[1-5][0-9a-f]{3}[89ab][0-9a-f]{3}[0-9a-f]{12}'")
        return value

    def create(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        """Store a new resource with the request's tags. A taken uuid fails as the database's primary key
        would: ZStack does not pre-check ``resourceUuid`` for duplicates, so the insert fails (SYS.1000)."""
        if self.state.taken(record["uuid"]):
            raise ApiError("SYS.1000", f"could not execute statement; Duplicate entry '{record['uuid']}' for key "
                                       f"'PRIMARY' [{KINDS[kind]}]")
        stored = self.state.add(kind, record)
        self.state.add_tags(record["uuid"], kind, self.system_tags, self.user_tags)
        return stored


Handler = Callable[[Ctx], Awaitable[dict[str, Any]]]
HANDLERS: dict[str, Handler] = {}


def api(action: str) -> Callable[[Handler], Handler]:
    """Register the handler of one declared route."""
    if action not in ROUTES:
        raise KeyError(f"{action} is not in services.zstack.routes.ROUTES")

    def register(handler: Handler) -> Handler:
        HANDLERS[action] = handler
        return handler

    return register


def success_if_not_existing(ctx: Ctx, field_name: str) -> None:
    """An ``@APIParam(successIfResourceNotExisting = true)`` field naming nothing: the API succeeds with an
    empty event, unless the value is not even a uuid (SYS.1003), as ZStack's ApiMessageValidator does."""
    value = str(ctx.param(field_name))
    if not _ZSTACK_UUID.fullmatch(value):
        raise ApiError("SYS.1003", f"invalid value[{value}] of field [{field_name}]")


def tag_values(tags: list[str], prefix: str) -> list[str]:
    """The values of ``prefix::value`` system tags."""
    return [t[len(prefix) + 2:] for t in tags if t.startswith(f"{prefix}::")]


def ensure_mapping(value: Any, name: str) -> Mapping[str, Any]:
    """A map parameter, or SYS.1007."""
    if not isinstance(value, Mapping):
        raise argerr(f"field[{name}] must be a map")
    return value
