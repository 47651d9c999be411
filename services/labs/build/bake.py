"""Baked VM2: an image of a VM2 with ZStack installed, so a lab skips the installer's half hour to an hour.

Baking (``labbot bake``) takes a lab whose install finished and whose nested ZStack is still empty (a database
holding hosts, storage or networks of another lab's addresses would be wrong in every lab made from it):

1. the nested admin password goes back to the installer's default (each lab sets its own again);
2. on VM2: ``zstack-ctl stop`` (a consistent database), and what must be unique per host is removed: the
   iSCSI initiator name (written again per lab, ``ensure_initiator_name``), ``/etc/machine-id`` emptied (systemd
   makes a new one at the next boot, the usual golden-image step), labbot's job records;
3. VM2 is stopped and its root volume becomes an image (``CreateRootVolumeTemplateFromRootVolume``, waited for
   until Ready), tagged with the ZStack version it holds;
4. VM2 starts again and the lab is put back as it was (ZStack started, the lab's password and initiator name).

A baked build (``install: {mode: baked}``) starts such an image instead of installing: see ``build.baked``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services import shell
from services.errors import ConflictError
from services.i18n import _
from services.labs.build.steps import LabSteps
from services.zstack.client import ZStackClient
from services.zstack.errors import ZStackError

log = logging.getLogger(__name__)

BAKED_TAG = "labbot::baked"  # on every image labbot bakes (not a lab tag: the orphan sweep leaves it alone)
VERSION_TAG = "labbot::zstack-version::"  # + the ZStack version the image holds
PROFILE_TAG = "labbot::baked-from-profile::"  # + the profile of the lab it was baked from
TEMPLATE_TIMEOUT = 3 * 3600.0  # copying a root disk of tens of GB to backup storage

Progress = Callable[[str], Awaitable[None]]

# Before the template: a stopped, consistent ZStack and nothing on the disk that belongs to this one host.
_GENERALIZE = r"""
command -v zstack-ctl >/dev/null 2>&1 || { echo "zstack-ctl not found: ZStack is not installed on VM2"; exit 3; }
zstack-ctl stop >/dev/null 2>&1 || true
rm -f /etc/iscsi/initiatorname.iscsi
if [ -e /etc/machine-id ]; then : > /etc/machine-id; fi
rm -rf /var/tmp/labbot
sync
echo "ZStack stopped; initiator name, machine-id and labbot's job records removed"
"""

@dataclass(frozen=True)
class BakedImage:
    """An image labbot baked: what a profile names for VM2 with ``install: {mode: baked}``."""

    uuid: str
    name: str
    zstack_version: str
    profile: str
    source_lab: str
    size_bytes: int


class BakeRefusedError(ConflictError):
    """The lab cannot be baked as it is (nothing was changed)."""


async def bake(steps: LabSteps, outer: ZStackClient, *, image_name: str, progress: Progress) -> BakedImage:
    """Make an image of the lab's VM2 (see the module's steps); the lab works as before afterwards."""
    ctx = steps.ctx
    lab = await ctx.lab()
    if not lab.vm2_uuid or not lab.vm2_ip:
        raise BakeRefusedError(_("lab `{name}` has no VM2 yet").format(name=lab.name))
    nested = await _installed_and_empty(steps, lab.name)
    version = await nested.get_version()
    vm2 = await outer.compute.get_vm(lab.vm2_uuid)
    if vm2 is None or not vm2.root_volume_uuid or not vm2.image_uuid:
        raise BakeRefusedError(_("lab `{name}`'s VM2 is gone from the lab platform").format(name=lab.name))
    source = await outer.get_raw("QueryImage", vm2.image_uuid)
    storages = [str(ref["backupStorageUuid"]) for ref in (source or {}).get("backupStorageRefs") or []]
    if not storages:
        raise BakeRefusedError(_("VM2's image is on no backup storage the new image could go to"))

    default = ctx.settings.nested_admin_password
    await progress(_("nested ZStack {version}: admin password back to the installer's default").format(
        version=version))
    await nested.change_password(default)
    await ctx.connections.close()  # log out of the nested API while it still answers
    try:
        done = await (await steps.ssh()).run("vm2", shell.sh_c(_GENERALIZE), timeout=300)
        await progress(done.stdout.strip()[-300:])
        await ctx.connections.close()  # SSH, while VM2 still answers
        await progress(_("stopping VM2"))
        await outer.compute.stop_vm(lab.vm2_uuid)
        await outer.compute.wait_vm_state(lab.vm2_uuid, {"Stopped"})
        await progress(_("copying VM2's root volume to the image {image} (this takes as long as the disk is big)")
                       .format(image=image_name))
        image = await outer.storage.create_root_volume_template(
            image_name, vm2.root_volume_uuid, storages,
            description=_("VM2 of lab {name} with ZStack {version} installed (labbot bake)").format(
                name=lab.name, version=version),
            resource_uuid=ctx.resource_uuid(f"baked:{image_name}"),
            user_tags=[BAKED_TAG, f"{VERSION_TAG}{version}", f"{PROFILE_TAG}{ctx.profile.name}"],
            deadline=time.monotonic() + TEMPLATE_TIMEOUT,
        )
    finally:
        await _put_back(steps, outer, progress)
    return BakedImage(uuid=image.uuid, name=image.name or image_name, zstack_version=version,
                      profile=ctx.profile.name, source_lab=lab.name, size_bytes=int(image.actual_size or 0))


async def _installed_and_empty(steps: LabSteps, lab_name: str) -> ZStackClient:
    """The lab's nested ZStack, when it answers and holds no zone, host or storage yet; else why not."""
    try:
        nested = await steps.nested()
        ready = await nested.is_ready()
    except ZStackError as err:
        raise BakeRefusedError(
            _("lab `{name}`'s nested ZStack does not answer ({error}): bake a lab whose install finished").format(
                name=lab_name, error=err.user_message)
        ) from None
    if not ready:
        raise BakeRefusedError(_("lab `{name}`'s nested ZStack is not running: bake a lab whose install "
                                 "finished").format(name=lab_name))
    found = {what: await nested.count(query) for what, query in (
        (_("zone"), "QueryZone"), (_("host"), "QueryHost"), (_("primary storage"), "QueryPrimaryStorage"),
        (_("backup storage"), "QueryBackupStorage"))}
    made = [f"{count} {what}" for what, count in found.items() if count]
    if made:
        raise BakeRefusedError(
            _("lab `{name}`'s nested ZStack already holds {made}: every lab made from the image would carry them, "
              "with this lab's addresses. Bake a lab stopped after the install (`labbot bake --profile P` builds "
              "one), or an exercise lab started at nested_compute").format(name=lab_name, made=", ".join(made))
        )
    return nested


async def _put_back(steps: LabSteps, outer: ZStackClient, progress: Progress) -> None:
    """Start VM2 again and give the lab back what the bake took: its ZStack, admin password, initiator name."""
    ctx = steps.ctx
    lab = await ctx.lab()
    assert lab.vm2_uuid
    await ctx.connections.close()  # whatever was opened since VM2 stopped
    await progress(_("starting VM2 again"))
    vm = await outer.compute.get_vm(lab.vm2_uuid)
    if vm is not None and vm.state != "Running":
        await outer.compute.start_vm(lab.vm2_uuid)
        await outer.compute.wait_vm_state(lab.vm2_uuid, {"Running"})
    ssh = await steps.ssh()
    await ssh.wait_ready("vm2", timeout=300)
    await steps.vm2_initiator(ssh)
    await steps.start_baked_zstack()
    nested = await steps.nested()
    async with asyncio.timeout(600):
        while not await nested.is_ready():  # noqa: ASYNC110 - polling a remote API: no local event to wait on
            await asyncio.sleep(2)
    await steps.own_admin_password()
    await progress(_("lab `{name}` is back as it was").format(name=lab.name))
