"""Lab profiles: what a lab is made of, one YAML file each under ``config/profiles/``.

A profile names resources on the lab platform (images, offerings, L3 networks) by name, so one file can
move between platforms; labbot resolves the names to uuids when it creates a lab. A bad profile fails at
start-up with the file, the field and the reason.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.errors import ConfigError
from config.settings import parse_duration

_PROFILE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
_IQN = re.compile(r"^iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[a-z0-9.:-]+)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VmSpec(_Strict):
    """One outer VM: what it boots and where its NICs go (the first L3 is the one labbot reaches it on)."""

    image: str
    instance_offering: str
    l3_networks: list[str] = Field(min_length=1)
    ssh_port: int = Field(22, ge=1, le=65535)


class DataVolumeSpec(_Strict):
    """VM1's data disk, exported over iSCSI and turned into nested SharedBlock storage."""

    size_gb: int = Field(50, ge=1, le=16384)
    disk_offering: str | None = None
    data_disk: str | None = None  # override of the by-id lookup, e.g. /dev/sdb

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
    iqn_prefix: str = "iqn.2026-11.io.labbot"

    @field_validator("iqn_prefix")
    @classmethod
    def _iqn(cls, value: str) -> str:
        if not _IQN.fullmatch(value):
            raise ValueError("must look like iqn.YYYY-MM.reversed.domain")
        return value


class InstallSpec(_Strict):
    """How ZStack is installed on VM2 (detached; the log is streamed as progress)."""

    installer: str  # path on VM2, or a local file (uploaded) when ``upload`` is true
    upload: bool = False
    command: str = "bash {installer} -E"
    timeout_minutes: int = Field(60, ge=1, le=600)
    api_port: int = Field(8080, ge=1, le=65535)
    ui_port: int = Field(5000, ge=1, le=65535)

    @field_validator("command")
    @classmethod
    def _has_installer(cls, value: str) -> str:
        if "{installer}" not in value:
            raise ValueError("must contain {installer}")
        return value


class NestedImageSpec(_Strict):
    name: str
    url: str
    format: Literal["qcow2", "raw", "iso"] = "qcow2"
    platform: str = "Linux"


class NestedOfferingSpec(_Strict):
    name: str
    cpu_num: int = Field(ge=1)
    memory_mb: int = Field(ge=64)


class NestedNetworkSpec(_Strict):
    l2_name: str = "l2-flat"
    physical_interface: str = "eth0"
    l3_name: str = "l3-flat"
    ip_start: str
    ip_end: str
    netmask: str
    gateway: str


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
        if not set(self.vm1.l3_networks) & set(self.vm2.l3_networks):
            raise ValueError("vm1 and vm2 must share an L3 network (the lab's VPC)")
        if parse_duration(self.ttl_default) > parse_duration(self.ttl_max):
            raise ValueError("ttl_default is longer than ttl_max")
        return self

    @property
    def vpc_network(self) -> str:
        """The L3 network VM1 and VM2 share: VM2 is reached, and the iSCSI portal served, on it."""
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
