"""What a simulator holds before the first call: a fresh install (nested) or a lab platform (outer).

Every install has the admin account, one management node and the built-in network service providers. The
outer role adds a working platform built from the lab profiles (config/profiles/*.yaml): every image,
instance offering, disk offering and L3 network a profile names, on one zone, one cluster, a few hosts with
capacity, Ceph primary storage and ImageStore backup storage.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from config.profiles import LabProfile, load_profiles
from sandbox.zstack_sim.api_images import image_record
from sandbox.zstack_sim.api_infra import host_record
from sandbox.zstack_sim.store import ADMIN_UUID, SimState, new_uuid, zstack_date

log = logging.getLogger(__name__)

GiB = 1024**3
DEFAULT_PROFILES_DIR = Path(__file__).resolve().parents[2] / "config" / "profiles"
# The sandbox's two L3 networks have fixed ranges (the sandbox helper routes them); other names get /22s
# from 198.18.16.0 up, inside 198.18.0.0/15 and clear of these two.
FIXED_RANGES: dict[str, tuple[str, str, str, str]] = {
    "sandbox-public": ("198.18.0.10", "198.18.3.250", "255.255.252.0", "198.18.0.1"),
    "sandbox-vpc": ("198.19.0.10", "198.19.15.250", "255.255.240.0", "198.19.0.1"),
}
_OFFERING_SHAPE = re.compile(r"(\d+)c(\d+)g")
PROVIDERS = {
    "Flat": ["DHCP", "Eip", "Userdata", "HostRoute", "DNS", "VipQos"],
    "SecurityGroup": ["SecurityGroup"],
    "VirtualRouter": ["DHCP", "DNS", "SNAT", "PortForwarding", "Eip", "LoadBalancer", "IPsec", "CentralizedDNS",
                      "VipQos"],
}


@dataclass(frozen=True)
class OuterSeed:
    """The outer platform's hardware: ``hosts`` hosts of ``cpu_num`` cores and ``memory`` bytes each."""

    hosts: int = 2
    cpu_num: int = 32
    memory: int = 512 * GiB  # 50 labs at once fit (VM2 has 8 GiB, as the installer needs)
    primary_storage_capacity: int = 50 * 1024 * GiB
    # (start, end, netmask, gateway) per L3 name, over FIXED_RANGES: a second lab-in-a-box on the same machine
    # (a test run next to a demo) puts its public network elsewhere in 198.18.0.0/15.
    ranges: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)


def seed_install(state: SimState, *, admin_password: str = "password") -> None:  # noqa: S107 - ZStack's default
    """A fresh install: admin account, this management node, the network service providers."""
    state.accounts["admin"] = (ADMIN_UUID, hashlib.sha512(admin_password.encode()).hexdigest())
    state.add("management_node", {"uuid": new_uuid(), "hostName": "127.0.0.1", "joinDate": zstack_date(),
                                  "heartBeat": zstack_date()})
    for provider_type, services in PROVIDERS.items():
        state.add("provider", {"uuid": new_uuid(), "name": f"{provider_type} Network Service Provider",
                               "description": None, "type": provider_type, "networkServiceTypes": services,
                               "attachedL2NetworkUuids": []})


def l3_ranges(names: Iterable[str], overrides: dict[str, tuple[str, str, str, str]] | None = None,
              ) -> dict[str, tuple[str, str, str, str]]:
    """(start, end, netmask, gateway) per L3 name: the fixed sandbox ones, then non-overlapping /22s."""
    fixed = {**FIXED_RANGES, **(overrides or {})}
    ranges = {name: fixed[name] for name in names if name in fixed}
    others = sorted(set(names) - set(fixed))
    if len(others) > 60:
        raise ValueError("the outer simulator can seed at most 60 L3 networks besides the sandbox ones")
    for index, name in enumerate(others):
        base = ipaddress.IPv4Address("198.18.16.0") + index * 1024
        ranges[name] = (str(base + 10), str(base + 1018), "255.255.252.0", str(base + 1))
    return ranges


def seed_outer(state: SimState, *, profiles_dir: Path | None = None, seed: OuterSeed | None = None) -> None:
    """A lab platform with everything the profiles name, ready for CreateVmInstance."""
    seed = seed or OuterSeed()
    profiles = list(load_profiles(profiles_dir or DEFAULT_PROFILES_DIR).values())
    zone = state.add("zone", {"uuid": new_uuid(), "name": "lab-platform-zone", "description": None,
                              "state": "Enabled", "type": "zstack", "isDefault": True})
    cluster = state.add("cluster", {"uuid": new_uuid(), "name": "lab-platform-cluster", "description": None,
                                    "zoneUuid": zone["uuid"], "state": "Enabled", "hypervisorType": "KVM",
                                    "type": "zstack", "architecture": "x86_64"})
    for index in range(seed.hosts):
        host = host_record(new_uuid(), f"lab-platform-host-{index + 1}", f"198.18.255.{11 + index}", cluster,
                           seed.cpu_num, seed.memory)
        state.add("host", {**host, "status": "Connected"})
    capacity = seed.primary_storage_capacity
    state.add("primary_storage", {
        "uuid": new_uuid(), "name": "lab-platform-ceph", "description": None, "zoneUuid": zone["uuid"],
        "url": "ceph://lab-platform-pool", "totalCapacity": capacity, "availableCapacity": capacity,
        "totalPhysicalCapacity": capacity, "availablePhysicalCapacity": capacity, "systemUsedCapacity": 0,
        "type": "Ceph", "state": "Enabled", "status": "Connected", "mountPath": None,
        "attachedClusterUuids": [cluster["uuid"]]})
    backup = state.add("backup_storage", {
        "uuid": new_uuid(), "name": "lab-platform-imagestore", "description": None, "url": "/zstack_bs",
        "totalCapacity": 20 * 1024 * GiB, "availableCapacity": 20 * 1024 * GiB, "type": "ImageStoreBackupStorage",
        "state": "Enabled", "status": "Connected", "attachedZoneUuids": [zone["uuid"]], "hostname": "198.18.255.10",
        "username": "root", "sshPort": 22})
    _seed_catalogue(state, profiles, backup["uuid"])
    _seed_networks(state, profiles, zone["uuid"], cluster["uuid"], seed.ranges)
    log.info("outer simulator seeded from %d profiles", len(profiles))


def _seed_catalogue(state: SimState, profiles: list[LabProfile], backup_uuid: str) -> None:
    images = sorted({p.vm1.image for p in profiles} | {p.vm2.image for p in profiles})
    for name in images:
        state.add("image", image_record(new_uuid(), name, f"http://198.18.255.10/images/{name}.qcow2", [backup_uuid],
                                        status="Ready"))
    for name in sorted({p.vm1.instance_offering for p in profiles} | {p.vm2.instance_offering for p in profiles}):
        shape = _OFFERING_SHAPE.search(name)
        cpu, memory_gb = (int(shape.group(1)), int(shape.group(2))) if shape else (2, 4)
        state.add("instance_offering", {
            "uuid": new_uuid(), "name": name, "description": None, "cpuNum": cpu, "cpuSpeed": 0,
            "memorySize": memory_gb * GiB, "reservedMemorySize": 0, "type": "UserVm",
            "allocatorStrategy": "LeastVmPreferredHostAllocatorStrategy", "sortKey": 0, "state": "Enabled"})
    disk_offerings = {p.data_volume.disk_offering: p.data_volume.size_gb for p in profiles
                      if p.data_volume.disk_offering}
    for name, size_gb in sorted(disk_offerings.items()):
        state.add("disk_offering", {"uuid": new_uuid(), "name": name, "description": None, "diskSize": size_gb * GiB,
                                    "type": "zstack", "state": "Enabled", "allocatorStrategy": None, "sortKey": 0})


VNI_RANGE = (100, 4000)  # the VNI range each seeded VXLAN pool has (CreateVniRange)


def _seed_networks(state: SimState, profiles: list[LabProfile], zone_uuid: str, cluster_uuid: str,
                   overrides: dict[str, tuple[str, str, str, str]]) -> None:
    for pool_name in sorted({p.lab_network.vxlan_pool for p in profiles if p.lab_network}):
        # What a platform admin makes once: CreateL2VxlanNetworkPool, CreateVniRange, attach to the cluster.
        state.add("l2", {
            "uuid": new_uuid(), "name": pool_name, "description": None, "zoneUuid": zone_uuid,
            "physicalInterface": "eth1", "type": "VxlanNetworkPool", "vSwitchType": "LinuxBridge",
            "virtualNetworkId": 0, "isolated": False, "attachedClusterUuids": [cluster_uuid],
            "vniRanges": [VNI_RANGE]})
    # The sandbox's shared networks exist even when no profile names them (a platform has them either way).
    names = {n for p in profiles for n in (*p.vm1.l3_networks, *p.vm2.l3_networks)} | set(FIXED_RANGES)
    flat = next(p for p in state.records["provider"].values() if p["type"] == "Flat")
    ranges = sorted(l3_ranges(names, overrides).items())
    for vlan, (name, (start, end, netmask, gateway)) in enumerate(ranges, start=100):
        public = "public" in name
        l2 = state.add("l2", {
            "uuid": new_uuid(), "name": f"{name}-l2", "description": None, "zoneUuid": zone_uuid,
            "physicalInterface": "eth0" if public else "eth1",
            "type": "L2NoVlanNetwork" if public else "L2VlanNetwork", "vSwitchType": "LinuxBridge",
            "virtualNetworkId": 0 if public else vlan, "isolated": False, "attachedClusterUuids": [cluster_uuid]})
        l3 = state.add("l3", {
            "uuid": new_uuid(), "name": name, "description": None, "type": "L3BasicNetwork", "zoneUuid": zone_uuid,
            "l2NetworkUuid": l2["uuid"], "state": "Enabled", "dnsDomain": None, "system": False,
            "category": "Public" if public else "Private", "ipVersion": 4, "enableIPAM": True, "dns": [],
            "networkServices": []})
        l3["networkServices"] = [{"l3NetworkUuid": l3["uuid"], "networkServiceProviderUuid": flat["uuid"],
                                  "networkServiceType": t} for t in ("DHCP", "Userdata")]
        network = ipaddress.IPv4Network(f"{start}/{netmask}", strict=False)
        state.add("ip_range", {
            "uuid": new_uuid(), "name": f"{name}-range", "description": None, "l3NetworkUuid": l3["uuid"],
            "startIp": start, "endIp": end, "netmask": netmask, "gateway": gateway, "networkCidr": str(network),
            "ipVersion": 4, "prefixLen": network.prefixlen, "ipRangeType": "Normal"})
