"""What the lab platform must offer before a lab can be built on it, checked against a profile.

Used twice: the build's ``prepare`` step refuses to start a lab the platform cannot carry (and says what is
wrong, all of it at once), and ``labbot doctor`` prints the same checks one per line. Every check reads only
(Query APIs): nothing on the platform changes.

What is checked, and why a real lab would fail without it:

* each image exists, is usable, is a ``RootVolumeTemplate`` (CreateVmInstance refuses an ISO without root-disk
  settings) and has the profile's architecture;
* each instance offering exists; VM2's is big enough for the ZStack installer (it refuses fewer than 4 CPUs
  or less than 7 GiB of memory);
* each L3 network exists, and each VM's *default* L3 (its first) offers the ``Userdata`` service: ZStack
  delivers the SSH key, root password and user data only through it (zstackio/zstack
  ``UserdataExtension.findProvider``), so without it labbot could never log in. (A per-lab ``lab_network``
  is made by labbot with the Flat provider's Userdata, so VM2 on it needs nothing from the platform.)
* the VXLAN pool a per-lab network comes from exists; a shared VPC's ranges do not overlap the nested
  network (the nested VMs bridge onto VM2's network).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Literal

from config.profiles import LabProfile, VmSpec
from services.errors import ConfigError
from services.i18n import _
from services.zstack.client import ZStackClient
from services.zstack.errors import ZStackError

log = logging.getLogger(__name__)

VXLAN_POOL_TYPE = "VxlanNetworkPool"  # the L2 type of a VXLAN pool (zstackio/zstack VxlanNetworkPoolConstant)
# zstack-utility installation/install.sh refuses a management node below these (real-hosts.md).
INSTALL_MIN_CPUS = 4
INSTALL_MIN_MEMORY = 7 * 1024**3
Role = Literal["vm1", "vm2"]


@dataclass(frozen=True)
class Check:
    """One preflight check: ``detail`` says what was found (ok) or what is wrong and what to do (problem)."""

    name: str
    ok: bool
    detail: str


@dataclass
class PlatformReport:
    """The checks, and the uuids they resolved (``vm1_image``, ``vm2_offering``, ``l3:<name>`` ...)."""

    checks: list[Check] = field(default_factory=list)
    uuids: dict[str, str] = field(default_factory=dict)

    @property
    def problems(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.ok]

    def raise_for_problems(self, profile: LabProfile) -> None:
        """A ConfigError naming every problem, when there is one."""
        if self.problems:
            raise ConfigError(_("the lab platform does not fit profile {name}: ").format(name=profile.name)
                              + "; ".join(c.detail for c in self.problems))

    def add(self, name: str, ok: bool, detail: str) -> None:
        """Record one check."""
        self.checks.append(Check(name, ok, detail))


async def check_platform(outer: ZStackClient, profile: LabProfile) -> PlatformReport:
    """Check the platform's images, offerings and networks against ``profile``; never raises for a problem it
    can name (a platform error on one check becomes that check's problem)."""
    report = PlatformReport()
    for role in ("vm1", "vm2"):
        spec: VmSpec = getattr(profile, role)
        await _guard(report, f"{role}_image", _image(outer, report, role, spec, profile.name))
        await _guard(report, f"{role}_offering", _offering(outer, report, role, spec, profile.name))
    for name in dict.fromkeys([*profile.vm1.l3_networks, *profile.vm2.l3_networks]):
        await _guard(report, f"l3:{name}", _network(outer, report, name, profile))
    if profile.lab_network is not None:
        await _guard(report, "vxlan_pool", _vxlan_pool(outer, report, profile))
    return report


async def _guard(report: PlatformReport, name: str, check: object) -> None:
    try:
        await check  # type: ignore[misc]
    except ZStackError as err:
        report.add(name, False, _("{name}: the platform did not answer the check: {err}").format(name=name, err=err))


async def _image(outer: ZStackClient, report: PlatformReport, role: Role, spec: VmSpec, profile: str) -> None:
    name = f"{role}_image"
    image = await outer.storage.find_image_by_name(spec.image)
    if image is None:
        report.add(
            name,
            False,
            _(
                "{role}: the lab platform has no image called `{image}`: add it, or change "
                "{role}.image in profile {profile}"
            ).format(role=role, image=spec.image, profile=profile),
        )
        return
    report.uuids[name] = image.uuid
    wrong = []
    if image.media_type != "RootVolumeTemplate":
        wrong.append(
            _(
                "is a {value}, not a RootVolumeTemplate (a VM cannot boot from it without a root disk "
                "offering): add the image as a root volume template"
            ).format(value=image.media_type or "image of unknown media type")
        )
    if image.architecture and image.architecture != spec.architecture:
        wrong.append(
            _("is {architecture}, but the profile's {role}.architecture is {architecture2}").format(
                architecture=image.architecture, role=role, architecture2=spec.architecture
            )
        )
    if not image.usable:
        wrong.append(
            _("is not usable (status {status}, state {state}): wait for it or re-add it").format(
                status=image.status, state=image.state
            )
        )
    if wrong:
        report.add(name, False, _("{role}: image `{image}` ").format(role=role, image=spec.image) + "; ".join(wrong))
    else:
        report.add(
            name,
            True,
            _("{role}: image `{image}` is a {value} root volume template").format(
                role=role, image=spec.image, value=image.architecture or spec.architecture
            ),
        )


async def _offering(outer: ZStackClient, report: PlatformReport, role: Role, spec: VmSpec, profile: str) -> None:
    name = f"{role}_offering"
    offering = await outer.compute.find_instance_offering_by_name(spec.instance_offering)
    if offering is None:
        report.add(
            name,
            False,
            _(
                "{role}: the lab platform has no instance offering called "
                "`{instance_offering}`: add it, or change {role}.instance_offering in "
                "profile {profile}"
            ).format(role=role, instance_offering=spec.instance_offering, profile=profile),
        )
        return
    report.uuids[name] = offering.uuid
    cpus, memory = offering.cpu_num or 0, offering.memory_size or 0
    shape = _("{cpus} CPUs, {value:.1f} GiB").format(cpus=cpus, value=memory / 1024**3)
    if role == "vm2" and (cpus < INSTALL_MIN_CPUS or memory < INSTALL_MIN_MEMORY):
        report.add(
            name,
            False,
            _(
                "vm2: instance offering `{instance_offering}` has {shape}; the ZStack "
                "installer needs at least {INSTALL_MIN_CPUS} CPUs and {value} GiB: use a "
                "bigger offering"
            ).format(
                instance_offering=spec.instance_offering,
                shape=shape,
                INSTALL_MIN_CPUS=INSTALL_MIN_CPUS,
                value=INSTALL_MIN_MEMORY // 1024**3,
            ),
        )
        return
    report.add(
        name,
        True,
        _("{role}: instance offering `{instance_offering}` ({shape})").format(
            role=role, instance_offering=spec.instance_offering, shape=shape
        ),
    )


async def _network(outer: ZStackClient, report: PlatformReport, name: str, profile: LabProfile) -> None:
    network = await outer.network.find_l3_network_by_name(name)
    key = f"l3:{name}"
    if network is None:
        report.add(
            key,
            False,
            _(
                "the lab platform has no L3 network called `{name}`: add it, or change the "
                "l3_networks of profile {name2}"
            ).format(name=name, name2=profile.name),
        )
        return
    report.uuids[key] = network.uuid
    if name == profile.vpc_network:
        nested = profile.nested.network.subnet
        ranges = [ipaddress.IPv4Network(r.network_cidr) for r in network.ip_ranges if r.network_cidr]
        clash = next((net for net in ranges if net.overlaps(nested)), None)
        if clash is not None:
            report.add(
                key,
                False,
                _(
                    "nested.network ({nested}) of profile {name} overlaps {clash} of "
                    "`{name2}`, the network VM2 sits on: pick a nested range outside it"
                ).format(nested=nested, name=profile.name, clash=clash, name2=name),
            )
            return
    default_of = [role for role in ("vm1", "vm2") if getattr(profile, role).l3_networks[:1] == [name]]
    if not default_of:
        report.add(key, True, _("L3 network `{name}` exists").format(name=name))
        return
    services = {s.get("networkServiceType") for s in network.network_services}
    if "Userdata" not in services:
        others = [n for role in default_of for n in getattr(profile, role).l3_networks[1:]]
        hint = _(", or list first one that has it (of {others})").format(others=others) if others else ""
        report.add(
            key,
            False,
            _(
                "L3 network `{name}` is the default network of {join} but offers no "
                "Userdata service, so the VM would never get labbot's SSH key: attach the "
                "Flat provider's Userdata service to it{hint}"
            ).format(name=name, join=" and ".join(default_of), hint=hint),
        )
        return
    report.add(
        key,
        True,
        _("L3 network `{name}` (default of {join}) offers Userdata").format(name=name, join=" and ".join(default_of)),
    )


async def _vxlan_pool(outer: ZStackClient, report: PlatformReport, profile: LabProfile) -> None:
    assert profile.lab_network is not None
    name = profile.lab_network.vxlan_pool
    pool = await outer.network.find_l2_network_by_name(name, network_type=VXLAN_POOL_TYPE)
    if pool is None:
        report.add(
            "vxlan_pool",
            False,
            _(
                "the lab platform has no VXLAN pool called `{name}` (profile "
                "{name2}): a platform admin creates it once "
                "(CreateL2VxlanNetworkPool, CreateVniRange, attached to the lab "
                "cluster)"
            ).format(name=name, name2=profile.name),
        )
        return
    report.uuids["vxlan_pool"] = pool.uuid
    report.add(
        "vxlan_pool",
        True,
        _("VXLAN pool `{name}` for the per-lab networks ({cidr})").format(name=name, cidr=profile.lab_network.cidr),
    )
