"""Handlers: zones, clusters, KVM hosts and CPU/memory capacity."""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from sandbox.zstack_sim.context import Ctx, api
from sandbox.zstack_sim.errors import argerr, operr
from sandbox.zstack_sim.views import render

log = logging.getLogger(__name__)

CPU_OVERPROVISIONING = 10  # ZStack's default cpu.overProvisioning.ratio: vCPUs per physical core
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*$")
ARCHITECTURES = ("x86_64", "aarch64", "mips64el", "loongarch64")


def check_address(value: str, field: str) -> str:
    """An IPv4 address or a host name, as ZStack's interceptors require of management IPs and hostnames."""
    try:
        ipaddress.IPv4Address(value)
        return value
    except ValueError:
        pass
    if re.fullmatch(r"[\d.]+", value) or not _HOSTNAME.match(value):
        raise argerr(f"{field}[{value}] is neither an IPv4 address nor a valid hostname")
    return value


def host_record(uuid: str, name: str, ip: str, cluster: dict[str, Any], cpu_num: int, memory: int,
                **extra: Any) -> dict[str, Any]:
    """A KVM host inventory with its capacity (vCPUs = cores x the over-provisioning ratio)."""
    return {
        "uuid": uuid, "name": name, "description": extra.pop("description", None), "zoneUuid": cluster["zoneUuid"],
        "clusterUuid": cluster["uuid"], "managementIp": ip, "hypervisorType": "KVM", "state": "Enabled",
        "status": "Connecting", "cpuNum": cpu_num, "cpuSockets": max(1, cpu_num // 16),
        "totalCpuCapacity": cpu_num * CPU_OVERPROVISIONING, "availableCpuCapacity": cpu_num * CPU_OVERPROVISIONING,
        "totalMemoryCapacity": memory, "availableMemoryCapacity": memory, "architecture": "x86_64",
        "username": extra.pop("username", "root"), "sshPort": extra.pop("sshPort", 22),
        "osDistribution": "rocky", "osRelease": "Green Obsidian", "osVersion": "8.10", **extra,
    }


@api("CreateZone")
async def create_zone(ctx: Ctx) -> dict[str, Any]:
    """A new, empty zone."""
    name = ctx.text("name", max_len=255) or ctx.required("name")
    record = {"uuid": ctx.resource_uuid(), "name": name, "description": ctx.text("description", max_len=2048),
              "state": "Enabled", "type": "zstack", "isDefault": ctx.flag("isDefault")}
    await ctx.work()
    return {"inventory": render(ctx.state, "zone", ctx.create("zone", record))}


@api("CreateCluster")
async def create_cluster(ctx: Ctx) -> dict[str, Any]:
    """A cluster in a zone."""
    zone = ctx.ref("zoneUuid", "zone")
    assert zone is not None
    name = ctx.text("name", max_len=255) or ctx.required("name")
    hypervisor = ctx.choice("hypervisorType", ("KVM", "Simulator", "baremetal", "baremetal2", "xdragon"))
    if hypervisor is None:
        ctx.required("hypervisorType")
    record = {"uuid": ctx.resource_uuid(), "name": name, "description": ctx.text("description", max_len=2048),
              "zoneUuid": zone["uuid"], "state": "Enabled", "hypervisorType": hypervisor,
              "type": ctx.choice("type", ("zstack", "baremetal", "baremetal2"), "zstack"),
              "architecture": ctx.choice("architecture", ARCHITECTURES, "x86_64")}
    await ctx.work()
    return {"inventory": render(ctx.state, "cluster", ctx.create("cluster", record))}


@api("AddKVMHost")
async def add_kvm_host(ctx: Ctx) -> dict[str, Any]:
    """Deploy a KVM host over SSH: Connecting while its agent is installed, then Connected."""
    cluster = ctx.ref("clusterUuid", "cluster")
    assert cluster is not None
    name = ctx.text("name", max_len=255) or ctx.required("name")
    ip = check_address(str(ctx.required("managementIp")), "managementIp")
    ctx.required("username")
    ctx.required("password")
    port = ctx.integer("sshPort", default=22, minimum=1)
    if port is not None and port > 65535:
        raise argerr(f"field[sshPort] must be in range of [1, 65535], but got {port}")
    if ctx.state.where("host", managementIp=ip):
        raise argerr(f"there has been a host having managementIp[{ip}]")
    cpu_num, memory = ctx.state.new_host_hardware
    record = host_record(ctx.resource_uuid(), name, ip, cluster, cpu_num, memory, username=ctx.param("username"),
                         sshPort=port, description=ctx.text("description", max_len=2048))
    host = ctx.create("host", record)
    try:
        await ctx.work()
        await _deploy(ctx, ip, port or 22)
        if await ctx.nested_hooks.hvm_cpu_flag(ip) is None:
            # KVMHost's collect-kvm-host-facts flow (zstackio/zstack plugin/kvm/.../KVMHost.java): the
            # agent reports no HVM flag; a new host that fails to connect is removed again.
            raise operr("cannot find either 'vmx' or 'svm' in /proc/cpuinfo, please make sure you have enabled "
                        "virtualization in your BIOS setting")
    except BaseException:
        ctx.state.remove("host", host["uuid"])
        raise
    ctx.state.touch(host, status="Connected")
    return {"inventory": render(ctx.state, "host", host)}


async def _deploy(ctx: Ctx, ip: str, port: int) -> None:
    """The host deploy logs in with the password it was given (ZStack's KVMHost connect flow over SSH)."""
    username = str(ctx.required("username"))
    try:
        await ctx.nested_hooks.deploy_host(ip, port, username, str(ctx.required("password")))
    except Exception as err:  # the SSH failure is the API's failure, worded as ZStack words it
        raise operr(f"unable to connect to KVM[ip:{ip}, username:{username}, sshPort:{port} ] to do DNS check, "
                    f"please check if username/password is wrong; {err}") from err


@api("ReconnectHost")
async def reconnect_host(ctx: Ctx) -> dict[str, Any]:
    """Reconnect a host's agent: Connecting, then Connected."""
    host = ctx.ref("uuid", "host")
    assert host is not None
    ctx.state.touch(host, status="Connecting")
    await ctx.work()
    ctx.state.touch(host, status="Connected")
    return {"inventory": render(ctx.state, "host", host)}


@api("GetCpuMemoryCapacity")
async def get_cpu_memory_capacity(ctx: Ctx) -> dict[str, Any]:
    """CPU and memory totals of the Connected, Enabled hosts in the scope (all hosts with ``all``)."""
    zones, clusters, hosts = ctx.str_list("zoneUuids"), ctx.str_list("clusterUuids"), ctx.str_list("hostUuids")
    everything = ctx.flag("all")
    if not (zones or clusters or hosts or everything):
        raise argerr("zoneUuids, clusterUuids or hostUuids must be set, or all must be true")
    chosen = [h for h in ctx.state.where("host", status="Connected", state="Enabled")
              if everything or h["zoneUuid"] in zones or h["clusterUuid"] in clusters or h["uuid"] in hosts]
    return {
        "totalCpu": sum(h["totalCpuCapacity"] for h in chosen),
        "availableCpu": sum(h["availableCpuCapacity"] for h in chosen),
        "totalMemory": sum(h["totalMemoryCapacity"] for h in chosen),
        "availableMemory": sum(h["availableMemoryCapacity"] for h in chosen),
    }


@api("UpdateKVMHost")
async def update_kvm_host(ctx: Ctx) -> dict[str, Any]:
    """Change the SSH login ZStack keeps for a KVM host (used when it reconnects and redeploys its agent), or its
    name (zstack ``KVMHost`` ``handle(APIUpdateKVMHostMsg)``: fields not given stay)."""
    host = ctx.ref("uuid", "host")
    assert host is not None
    changes = {key: ctx.text(key, max_len=255) for key in ("name", "username", "password")}
    port = ctx.param("sshPort")
    if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
        raise argerr(f"invalid field[sshPort], value[{port}] is not a port")
    await ctx.work()
    ctx.state.touch(host, **{k: v for k, v in changes.items() if v is not None},
                    **({"sshPort": port} if port is not None else {}))
    return {"inventory": render(ctx.state, "host", host)}
