"""Handlers: resource configuration, i.e. a global config bound to one resource (``UpdateResourceConfig``).

Only the configs the lab needs are modelled, with ZStack's validation: ``kvm/vm.cpuMode`` (zstackio/zstack
``plugin/kvm/.../KVMGlobalConfig.java``: ``@BindResourceConfig({VmInstanceVO, ClusterVO})``, valid values
``none``, ``host-model``, ``host-passthrough`` and named CPU models; default ``none`` in
``conf/globalConfig/kvm.xml``). The value a VM runs with is read when it starts (libvirt's domain XML is
written then), so setting it on a Running VM changes nothing until the VM is stopped and started again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sandbox.zstack_sim.context import Ctx, api
from sandbox.zstack_sim.errors import argerr
from sandbox.zstack_sim.store import KINDS, SimState, new_uuid, zstack_date

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConfigDef:
    """A bindable global config: its default, the resource kinds it binds to, and its valid values."""

    default: str
    kinds: tuple[str, ...]
    valid: tuple[str, ...] | None = None


CPU_MODES = ("none", "host-model", "host-passthrough", "Dhyana", "EPYC", "EPYC-IBPB", "Haswell", "Haswell-noTSX",
             "Broadwell", "Broadwell-noTSX", "SandyBridge", "IvyBridge", "Conroe", "Penryn", "Nehalem", "Westmere",
             "Opteron_G1", "Opteron_G2", "Opteron_G3", "Opteron_G4", "pentium", "pentium2", "pentium3",
             "Kunpeng-920", "FT-2000+", "Tengyun-S2500")
CONFIGS: dict[tuple[str, str], ConfigDef] = {
    ("kvm", "vm.cpuMode"): ConfigDef("none", ("vm", "cluster"), CPU_MODES),
}
NESTED_CPU_MODES = frozenset({"host-model", "host-passthrough"})  # the modes that pass vmx/svm to the guest


def _definition(ctx: Ctx) -> tuple[str, str, ConfigDef]:
    category, name = str(ctx.required("category")), str(ctx.required("name"))
    definition = CONFIGS.get((category, name))
    if definition is None:
        raise argerr(f"no global config[category:{category}, name:{name}] found")
    return category, name, definition


def _bound_resource(ctx: Ctx, category: str, name: str, definition: ConfigDef) -> tuple[str, dict[str, Any]]:
    uuid = str(ctx.required("resourceUuid"))
    for kind in KINDS:
        record = ctx.state.get(kind, uuid)
        if record is not None:
            if kind not in definition.kinds:
                bound = [KINDS[k] for k in definition.kinds]
                raise argerr(f"global config[category:{category}, name:{name}] cannot be bound to resource type "
                             f"{KINDS[kind]}, it can only be bound to {bound}")
            return kind, record
    raise argerr(f"invalid field[resourceUuid], resource[uuid:{uuid}] not found")


def effective_value(state: SimState, category: str, name: str, vm: dict[str, Any]) -> str:
    """The value a VM runs with: its own binding, else its cluster's, else the global default."""
    for uuid in (vm.get("uuid"), vm.get("clusterUuid")):
        value = state.resource_configs.get((str(uuid), category, name))
        if value is not None:
            return value
    return CONFIGS[(category, name)].default


@api("UpdateResourceConfig")
async def update_resource_config(ctx: Ctx) -> dict[str, Any]:
    """Bind a value of a global config to one resource."""
    category, name, definition = _definition(ctx)
    kind, record = _bound_resource(ctx, category, name, definition)
    value = str(ctx.required("value"))
    if definition.valid is not None and value not in definition.valid:
        raise argerr(f"the value[{value}] is not a valid value of global config[category:{category}, name:{name}], "
                     f"valid values are {list(definition.valid)}")
    await ctx.work()
    ctx.state.resource_configs[(record["uuid"], category, name)] = value
    now = zstack_date()
    return {"inventory": {"uuid": new_uuid(), "resourceUuid": record["uuid"], "resourceType": KINDS[kind],
                          "name": name, "category": category, "value": value, "createDate": now, "lastOpDate": now}}


@api("GetResourceConfig")
async def get_resource_config(ctx: Ctx) -> dict[str, Any]:
    """The value bound to a resource (or the one it inherits)."""
    category, name, definition = _definition(ctx)
    kind, record = _bound_resource(ctx, category, name, definition)
    own = ctx.state.resource_configs.get((record["uuid"], category, name))
    value = effective_value(ctx.state, category, name, record) if kind == "vm" else own or definition.default
    effective = [{"resourceUuid": record["uuid"], "resourceType": KINDS[kind], "category": category, "name": name,
                  "value": own}] if own is not None else []
    return {"value": value, "effectiveConfigs": effective}
