"""Lab profiles: what a lab is made of, one YAML file each under ``config/profiles/``.

A profile names resources on the lab platform (images, offerings, L3 networks) by name, so one file can
move between platforms; labbot resolves the names to uuids when it creates a lab. A bad profile fails at
start-up with the file, the field and the reason.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.errors import ConfigError
from config.settings import parse_duration

PROJECT_DIR = Path(__file__).resolve().parents[1]  # relative files in profiles are from here
_PROFILE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
_IQN = re.compile(r"^iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[a-z0-9.:-]+)?$")
# A Linux interface name (IFNAMSIZ 16 with the NUL), as the nested L2 network's physicalInterface.
INTERFACE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ZStack's query operators (zstackio/zstack rest/.../RestServer.java QUERY_OP_MAPPING): the server splits a
# ``q`` condition at the first of these it finds, so a name containing one would query something else.
QUERY_OPERATORS = ("!=", ">=", "<=", "!?=", "!~=", "~=", "?=", "=", ">", "<", "is null", "not null")
ARCHITECTURES = ("x86_64", "aarch64", "mips64el", "loongarch64")  # ImageInventory/ClusterInventory architecture


def check_platform_name(value: str) -> str:
    """A name labbot looks up on the platform with ``q=name=<value>``: non-empty, one line, no operator text."""
    if not value.strip() or value != value.strip() or any(c in value for c in "\r\n\t"):
        raise ValueError(f"{value!r} must be a non-empty name without surrounding blanks or line breaks")
    found = [op for op in QUERY_OPERATORS if op in value.lower()]
    if found:
        raise ValueError(f"{value!r} contains {found[0]!r}, a ZStack query operator: labbot finds platform "
                         "resources by name in a query, which this name would change; rename the resource")
    return value


class VmSpec(_Strict):
    """One outer VM: what it boots and where its NICs go (the first L3 is its default network: the one labbot
    reaches it on and the one whose Userdata service delivers its SSH key)."""

    image: str
    instance_offering: str
    l3_networks: list[str] = Field(default_factory=list)  # the platform's networks; the lab network comes after
    ssh_port: int = Field(22, ge=1, le=65535)
    architecture: Literal["x86_64", "aarch64", "mips64el", "loongarch64"] = "x86_64"  # the image's, checked
    # kvm/vm.cpuMode set on this VM before its first start (UpdateResourceConfig): host-passthrough or
    # host-model give the guest vmx/svm, which a nested ZStack's KVM host needs. None: the platform's setting.
    cpu_mode: Literal["host-passthrough", "host-model"] | None = None

    @field_validator("image", "instance_offering")
    @classmethod
    def _platform_name(cls, value: str) -> str:
        return check_platform_name(value)

    @field_validator("l3_networks")
    @classmethod
    def _platform_names(cls, value: list[str]) -> list[str]:
        for name in value:
            check_platform_name(name)
        if len(set(value)) != len(value):
            raise ValueError("an L3 network is listed twice")
        return value


class LabNetworkSpec(_Strict):
    """The private network labbot creates for each lab (VM1's second NIC, VM2's only one), so labs are isolated.

    An L2 VXLAN network from the platform admin's VXLAN pool (ZStack allocates its VNI), a private L3 network
    on it with ``cidr`` (gateway = its first address; no router, so nothing routes between labs), and the Flat
    provider's DHCP and Userdata services (VM2 gets its key through it). Labs cannot see each other, so every
    lab may use the same ``cidr``.
    """

    vxlan_pool: str
    cidr: str

    @field_validator("vxlan_pool")
    @classmethod
    def _pool_name(cls, value: str) -> str:
        return check_platform_name(value)

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value)
        except ValueError:
            raise ValueError("must be an IPv4 network such as 10.20.0.0/24 (host bits zero)") from None
        if network.prefixlen > 29:
            raise ValueError("must hold at least a gateway and a few addresses (/29 or larger)")
        return value

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def gateway(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def ip_range(self) -> tuple[str, str]:
        """The addresses VMs get: everything after the gateway, before the broadcast address."""
        return str(self.network.network_address + 2), str(self.network.broadcast_address - 1)


class DataVolumeSpec(_Strict):
    """VM1's data disk, exported over iSCSI and turned into nested SharedBlock storage."""

    size_gb: int = Field(50, ge=1, le=16384)
    disk_offering: str | None = None
    data_disk: str | None = None  # override of the by-id lookup, e.g. /dev/sdb

    @field_validator("disk_offering")
    @classmethod
    def _platform_name(cls, value: str | None) -> str | None:
        return check_platform_name(value) if value is not None else None

    @field_validator("data_disk")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"/[A-Za-z0-9._/-]+", value):
            raise ValueError("must be an absolute device path such as /dev/sdb")
        return value


class IscsiSpec(_Strict):
    """How VM1 exports the disk."""

    backend: Literal["targetcli", "tgt"]
    port: int = Field(3260, ge=1, le=65535)
    # One-way CHAP with a random secret per lab, on the target and in the nested AddIscsiServer (which takes
    # chapUserName/chapUserPassword), so only the lab's own VM2 can log in even from a spoofed initiator name.
    chap: bool = True
    iqn_prefix: str = "iqn.2026-11.io.labbot"

    @field_validator("iqn_prefix")
    @classmethod
    def _iqn(cls, value: str) -> str:
        if not _IQN.fullmatch(value):
            raise ValueError("must look like iqn.YYYY-MM.reversed.domain")
        return value


_INSTALLER_PATTERN = re.compile(r"/[A-Za-z0-9._/*?\[\]-]+")
_INSTALL_ROOT = re.compile(r"/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)+")


class InstallSpec(_Strict):
    """How ZStack is installed on VM2 (detached; the log is streamed as progress).

    ``installer`` is where the installer is on VM2: an absolute path or shell glob, or several tried in order
    (on a ZStack ISO OS it is ``/opt/zstack-dvd/<arch>/<release>/zstack-installer.bin``). With ``upload`` it is
    a local file instead, copied to VM2. After a failed install labbot does what the installer asks of a person:
    ``zstack-ctl stop``, removes ``install_root``, and runs ``retry_command`` (``-D`` drops the half-made
    database, which the installer otherwise refuses).
    """

    # ``installer``: run the installer (the manual procedure). ``baked``: VM2's image already holds an installed
    # ZStack (``labbot bake``); the build gives it this VM2's address and identity and starts it (see bake.py).
    mode: Literal["installer", "baked"] = "installer"
    installer: str | list[str] | None = None
    upload: bool = False
    command: str = "bash {installer} -E"
    retry_command: str = "bash {installer} -E -D"
    install_root: str = "/usr/local/zstack"
    timeout_minutes: int = Field(60, ge=1, le=600)
    api_port: int = Field(8080, ge=1, le=65535)
    ui_port: int = Field(5000, ge=1, le=65535)

    @field_validator("command", "retry_command")
    @classmethod
    def _has_installer(cls, value: str) -> str:
        if "{installer}" not in value:
            raise ValueError("must contain {installer}")
        return value

    @field_validator("install_root")
    @classmethod
    def _root(cls, value: str) -> str:
        if not _INSTALL_ROOT.fullmatch(value) or ".." in value.split("/"):
            raise ValueError("must be an absolute directory path below / such as /usr/local/zstack")
        return value

    @model_validator(mode="after")
    def _installer_paths(self) -> InstallSpec:
        patterns = self.installer_patterns
        if self.mode == "baked":
            if patterns or self.upload:
                raise ValueError("installer: a baked VM2 image has ZStack installed already; remove installer "
                                 "and upload, or use mode: installer")
            return self
        if not patterns:
            raise ValueError("installer: give at least one path")
        if self.upload and (len(patterns) != 1 or any(c in patterns[0] for c in "*?[")):
            raise ValueError("installer: with upload, one local file (no glob)")
        if not self.upload:
            for pattern in patterns:
                if not _INSTALLER_PATTERN.fullmatch(pattern) or ".." in pattern.split("/"):
                    raise ValueError(f"installer: {pattern!r} must be an absolute path or glob on VM2 "
                                     "(letters, digits, . _ - / * ? [ ])")
        return self

    @property
    def installer_patterns(self) -> list[str]:
        """Where to look for the installer, in order (none for a baked image)."""
        if self.installer is None:
            return []
        return [self.installer] if isinstance(self.installer, str) else list(self.installer)


class NestedImageSpec(_Strict):
    """The image the nested VM boots. The lab platform has no internet, so labbot brings it: ``file`` is a local
    qcow2/raw file that labbot uploads to VM1 and serves there on the VPC (``serve_port``); the nested ZStack
    downloads it from ``url`` (default ``http://{vm1_vpc_ip}:<serve_port>/<file name>``)."""

    name: str
    file: str | None = None  # local path; relative paths are from the project directory
    url: str | None = None
    serve_port: int = Field(8000, ge=1024, le=65535)
    # The nested VM boots from this image as its root disk: a root-volume template (qcow2 or raw). An ISO
    # would be registered with mediaType ISO and need a root disk offering, which labbot does not make.
    format: Literal["qcow2", "raw"] = "qcow2"
    platform: str = "Linux"

    @field_validator("format", mode="before")
    @classmethod
    def _not_iso(cls, value: object) -> object:
        if isinstance(value, str) and value.lower() == "iso":
            raise ValueError("an ISO cannot be the nested VM's root disk (it is added with mediaType ISO and "
                             "needs a root disk offering); give a qcow2 or raw cloud image")
        return value

    @field_validator("file")
    @classmethod
    def _file_name(cls, value: str | None) -> str | None:
        if value is not None and (not re.fullmatch(r"[A-Za-z0-9._/-]+", value) or value.endswith("/")):
            raise ValueError("must be a file path of plain characters (letters, digits, . _ - /)")
        return value

    @model_validator(mode="after")
    def _source(self) -> NestedImageSpec:
        if self.file is None and self.url is None:
            raise ValueError("give file (a local image labbot serves from VM1) or url")
        return self

    @property
    def file_name(self) -> str:
        """The name the image is uploaded and served under."""
        return Path(self.file or "").name

    def local_path(self, project_root: Path) -> Path | None:
        """The local image file, or None when the profile gives only a URL."""
        if self.file is None:
            return None
        path = Path(self.file)
        return path if path.is_absolute() else project_root / path

    def download_url(self, vm1_vpc_ip: str) -> str:
        """The URL the nested ZStack's AddImage gets."""
        template = self.url or f"http://{{vm1_vpc_ip}}:{self.serve_port}/{self.file_name}"
        return template.format(vm1_vpc_ip=vm1_vpc_ip)


_IMAGE_MAGIC = {"qcow2": b"QFI\xfb"}


def nested_image_problem(profile: LabProfile, project_root: Path = PROJECT_DIR) -> str | None:
    """What is wrong with the profile's local nested image file, or None (also when it serves none).

    For ``labbot doctor`` and the build's first step: the file must exist, be a readable regular file and
    have the declared format (a qcow2 starts with ``QFI\\xfb``; a raw image must not).
    """
    spec = profile.nested.image
    path = spec.local_path(project_root)
    if path is None:
        return None
    where = f"profile {profile.name}, nested.image.file"
    if not path.exists():
        return f"the nested image file {path} does not exist ({where}); put a {spec.format} image (e.g. CirrOS) there"
    if not path.is_file():
        return f"the nested image file {path} is not a regular file ({where})"
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as err:
        return f"the nested image file {path} cannot be read: {err.strerror} ({where})"
    is_qcow2 = head == _IMAGE_MAGIC["qcow2"]
    if (spec.format == "qcow2") != is_qcow2:
        actual = "a qcow2 image" if is_qcow2 else "not a qcow2 image"
        return f"the nested image file {path} is {actual}, but nested.image.format is {spec.format} ({where})"
    return None


class NestedOfferingSpec(_Strict):
    name: str
    cpu_num: int = Field(ge=1)
    memory_mb: int = Field(ge=64)


class NestedNetworkSpec(_Strict):
    """The nested flat network. Its L2 bridges the VM2 NIC that carries VM2's address (found on VM2 unless
    ``physical_interface`` names it); its range must lie outside the lab network's (checked here and against
    the platform)."""

    l2_name: str = "l2-flat"
    physical_interface: str | None = None
    l3_name: str = "l3-flat"
    ip_start: str
    ip_end: str
    netmask: str
    gateway: str

    @field_validator("physical_interface")
    @classmethod
    def _interface(cls, value: str | None) -> str | None:
        if value is not None and not INTERFACE_NAME.fullmatch(value):
            raise ValueError("must be a network interface name such as eth0 (letters, digits, . _ -; 15 at most)")
        return value

    @field_validator("ip_start", "ip_end", "gateway")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 address") from None
        return value

    @model_validator(mode="after")
    def _one_subnet(self) -> NestedNetworkSpec:
        try:
            subnet = ipaddress.IPv4Network(f"{self.gateway}/{self.netmask}", strict=False)
        except ValueError:
            raise ValueError(f"netmask {self.netmask!r} is not a valid IPv4 netmask") from None
        start, end = ipaddress.IPv4Address(self.ip_start), ipaddress.IPv4Address(self.ip_end)
        if start > end or start not in subnet or end not in subnet:
            raise ValueError(f"ip_start..ip_end must be an ascending range inside {subnet}")
        return self

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        """The nested network's subnet (what its range, gateway and DHCP occupy)."""
        return ipaddress.IPv4Network(f"{self.gateway}/{self.netmask}", strict=False)


class NestedSpec(_Strict):
    """What labbot builds inside the nested ZStack on VM2."""

    zone: str = "zone-1"
    cluster: str = "cluster-1"
    primary_storage: str = "ps-sharedblock"
    backup_storage: str = "bs-imagestore"
    backup_storage_url: str = "/zstack_bs"
    image: NestedImageSpec
    offering: NestedOfferingSpec
    network: NestedNetworkSpec
    vm_name: str = "nested-vm1"


class ExerciseSpec(_Strict):
    """Exercise labs of this profile (``/lab create --exercise``): where the student's own work starts."""

    start: str = Field("iscsi_target", pattern=r"^[a-z][a-z0-9_]{1,47}$")  # a task: services.labs.tasks checks


class PoolSpec(_Strict):
    """A warm pool: ``size`` labs of this profile kept built and unclaimed, so `/lab create` hands one out at once.

    An unclaimed pool lab is rebuilt when the profile changes, its health fails, or it has waited ``ttl``.
    """

    size: int = Field(0, ge=0, le=50)
    ttl: str = "7d"

    @field_validator("ttl")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def max_wait(self) -> timedelta:
        return parse_duration(self.ttl)


class LabProfile(_Strict):
    """A whole lab recipe."""

    name: str
    description: str = ""
    vm1: VmSpec
    vm2: VmSpec
    data_volume: DataVolumeSpec = DataVolumeSpec()
    iscsi: IscsiSpec
    install: InstallSpec
    nested: NestedSpec
    exercise: ExerciseSpec = ExerciseSpec()
    pool: PoolSpec = PoolSpec()
    lab_network: LabNetworkSpec | None = None  # None: VM1 and VM2 share a platform network named in both
    ttl_default: str = "8h"
    ttl_max: str = "3d"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _PROFILE_NAME.fullmatch(value):
            raise ValueError("must be a lower-case name (letters, digits, hyphens)")
        return value

    @field_validator("ttl_default", "ttl_max")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _shared_vpc(self) -> LabProfile:
        if not self.vm1.l3_networks:
            raise ValueError("vm1.l3_networks must name the network labbot reaches VM1 on")
        if self.lab_network is None and not set(self.vm1.l3_networks) & set(self.vm2.l3_networks):
            raise ValueError("vm1 and vm2 must share an L3 network (the lab's VPC), or set lab_network")
        if self.lab_network is not None and self.lab_network.network.overlaps(self.nested.network.subnet):
            raise ValueError(f"nested.network ({self.nested.network.subnet}) overlaps lab_network.cidr "
                             f"({self.lab_network.cidr}): the nested VMs would take the lab VMs' addresses")
        if parse_duration(self.ttl_default) > parse_duration(self.ttl_max):
            raise ValueError("ttl_default is longer than ttl_max")
        return self

    @property
    def vpc_network(self) -> str | None:
        """The platform L3 network VM1 and VM2 share, when the profile has no per-lab ``lab_network``: VM2 is
        reached, and the iSCSI portal served, on it."""
        if self.lab_network is not None:
            return None
        return next(n for n in self.vm2.l3_networks if n in self.vm1.l3_networks)

    @property
    def default_ttl(self) -> timedelta:
        return parse_duration(self.ttl_default)

    @property
    def max_ttl(self) -> timedelta:
        return parse_duration(self.ttl_max)


def load_profile(path: Path) -> LabProfile:
    """Read and validate one profile file; errors name the file, the field and the reason."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"profile {path}: cannot read: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path}: must be a mapping of fields")
    try:
        profile = LabProfile.model_validate(data)
    except ValidationError as err:
        lines = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in err.errors()]
        raise ConfigError(f"profile {path}: " + "; ".join(lines)) from None
    if profile.name != path.stem:
        raise ConfigError(f"profile {path}: name {profile.name!r} must match the file name {path.stem!r}")
    return profile


def load_profiles(directory: Path) -> dict[str, LabProfile]:
    """Every ``*.yaml`` profile in a directory, by name."""
    profiles = {p.stem: load_profile(p) for p in sorted(directory.glob("*.yaml"))}
    if not profiles:
        raise ConfigError(f"no lab profiles (*.yaml) in {directory}")
    return profiles
