"""The lab pipeline's steps, after the real lab's manual procedure, as a DAG.

    prepare ─► create_vms ─┬─► attach_volume ───────────────┐
                           └─► wait_ssh ─┬─► iscsi_target ──┴─► nested_storage ─┐
                                         ├─► install_zstack ─► nested_compute ──┼─► nested_vm ─► first_health
                                         │                     └─► nested_network_image ─┘
                                         └─► serve_image (VM1) ───────────────────┘

VM1's volume and iSCSI target are built while VM2 installs ZStack; the nested network, image and offering are
built while the SharedBlock storage is. Every create passes a deterministic ``resourceUuid`` (see
``LabContext.resource_uuid``), so a step re-run after a crash finds what it made instead of making it twice.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
from pathlib import Path

from pydantic import SecretStr

from config.profiles import PROJECT_DIR, nested_image_problem
from services.db import PROJECT_ROOT
from services.errors import ExternalError
from services.i18n import N_, Texts, _
from services.iscsi.backends import backend_for
from services.iscsi.base import TargetSpec
from services.iscsi.disk import find_data_disk
from services.iscsi.initiator import ensure_initiator_name, lab_initiator_name
from services.iscsi.naming import target_iqn
from services.labs.build.baked import start_baked_zstack
from services.labs.build.context import LabContext
from services.labs.build.dag import Step
from services.labs.build.image import local_image, upload_image
from services.labs.build.image import serve_image as run_image_server
from services.labs.build.installer import clean_failed_install, find_installer
from services.labs.build.interfaces import interface_carrying
from services.labs.models import Lab
from services.labs.preflight import check_platform
from services.shell import quote
from services.ssh.detached import JobStatus, follow, job_status, reset_job, start_detached
from services.ssh.errors import SSHAuthError
from services.ssh.keys import generate_keypair
from services.ssh.session import LabSSH
from services.zstack.client import ZStackClient
from services.zstack.errors import ZStackAuthError
from services.zstack.inventories import VmInstanceInventory

log = logging.getLogger(__name__)

TITLES = Texts({
    "prepare": N_("Prepare keys and check the platform"),
    "create_vms": N_("Create VM1 and VM2"),
    "attach_volume": N_("Attach the 50 GB data volume to VM1"),
    "wait_ssh": N_("Reach VM1, and VM2 through it"),
    "iscsi_target": N_("Export VM1's disk over iSCSI"),
    "serve_image": N_("Serve the nested image from VM1"),
    "install_zstack": N_("Install ZStack on VM2"),
    "nested_compute": N_("Zone, cluster and KVM host"),
    "nested_storage": N_("SharedBlock storage on the iSCSI LUN"),
    "nested_network_image": N_("Network, image and offering"),
    "nested_vm": N_("Boot the nested VM"),
    "first_health": N_("First health check"),
})
INSTALL_JOB = "install-zstack"
# cloud-config for VM2, sent as ZStack's ``userdata::`` system tag (base64). ZStack adds it as its own part next
# to the part it builds from ``sshkey::``/``rootPassword::`` (zstack UserdataBuilder), which sets the password but
# not ``ssh_pwauth``: RHEL-family cloud.cfg ships ``ssh_pwauth: 0``, and the nested ZStack logs in to VM2 with
# root's password (AddKVMHost, the ImageStore backup storage).
VM2_USERDATA = "#cloud-config\nssh_pwauth: true\ndisable_root: false\n"
_PERCENT = re.compile(r"(\d{1,3})%")


class ExternalStepError(ExternalError):
    """A step found the remote world in a state it cannot work with."""


def build_steps(ctx: LabContext, outer: ZStackClient, health: object) -> list[Step]:
    """The steps of one lab's build, bound to its context."""
    s = LabSteps(ctx, outer, health)
    minutes = ctx.profile.install.timeout_minutes * 60.0
    return [
        Step("prepare", TITLES["prepare"], s.prepare, timeout=120),
        Step("create_vms", TITLES["create_vms"], s.create_vms, ("prepare",), timeout=900),
        Step("attach_volume", TITLES["attach_volume"], s.attach_volume, ("create_vms",), timeout=600),
        Step("wait_ssh", TITLES["wait_ssh"], s.wait_ssh, ("create_vms",), timeout=600),
        Step("iscsi_target", TITLES["iscsi_target"], s.iscsi_target, ("attach_volume", "wait_ssh"), timeout=300),
        Step("serve_image", TITLES["serve_image"], s.serve_image, ("wait_ssh",), timeout=1800),
        Step("install_zstack", TITLES["install_zstack"], s.install_zstack, ("wait_ssh",), timeout=minutes + 300),
        Step("nested_compute", TITLES["nested_compute"], s.nested_compute, ("install_zstack",), timeout=900),
        Step("nested_storage", TITLES["nested_storage"], s.nested_storage, ("nested_compute", "iscsi_target"),
             timeout=900),
        Step("nested_network_image", TITLES["nested_network_image"], s.nested_network_image,
             ("nested_compute", "serve_image"), timeout=1800),
        Step("nested_vm", TITLES["nested_vm"], s.nested_vm, ("nested_storage", "nested_network_image"), timeout=900),
        Step("first_health", TITLES["first_health"], s.first_health, ("nested_vm",), timeout=300),
    ]


class LabSteps:
    """The step bodies; each is idempotent and converges on what already exists."""

    def __init__(self, ctx: LabContext, outer: ZStackClient, health: object) -> None:
        self.ctx = ctx
        self.outer = outer
        self.health = health

    # --- connections ---------------------------------------------------------------------------------

    async def ssh(self) -> LabSSH:
        lab = await self.ctx.lab()
        if not lab.vm1_public_ip:
            raise ExternalStepError(_("VM1 has no address yet"))
        return await self.ctx.connections.ssh(
            vm1=lab.vm1_public_ip,
            vm1_port=self.ctx.profile.vm1.ssh_port,
            vm2=lab.vm2_ip,
            vm2_port=self.ctx.profile.vm2.ssh_port,
            private_key=await self.ctx.secret("ssh_private_key_enc"),
        )

    async def nested(self, *, password: SecretStr | None = None) -> ZStackClient:
        """The nested ZStack as admin with the lab's own password (``password`` overrides, e.g. the default)."""
        return await self.ctx.connections.nested(await self.ssh(), api_port=self.ctx.profile.install.api_port,
                                                 password=password or await self.nested_password())

    async def nested_password(self) -> SecretStr:
        """The lab's nested admin password; a lab made before labbot set one per lab keeps the default."""
        if (await self.ctx.lab()).nested_password_enc:
            return await self.ctx.secret("nested_password_enc")
        return self.ctx.settings.nested_admin_password

    # --- outer platform ------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Make the lab's credentials (once) and check that the platform has what the profile names."""
        lab = await self.ctx.lab()
        changes: dict[str, object] = {}
        if not lab.ssh_private_key_enc:
            pair = generate_keypair(comment=f"labbot-{lab.name}")
            changes.update(
                ssh_public_key=pair.public_openssh, ssh_private_key_enc=self.ctx.box.encrypt(pair.private_openssh)
            )
        if not lab.host_password_enc:
            changes["host_password_enc"] = self.ctx.box.encrypt(SecretStr(secrets.token_urlsafe(18)))
        if not lab.nested_password_enc:
            changes["nested_password_enc"] = self.ctx.box.encrypt(SecretStr(secrets.token_urlsafe(15)))
        if not lab.chap_secret_enc:
            changes["chap_secret_enc"] = self.ctx.box.encrypt(SecretStr(secrets.token_hex(8)))  # 16 characters
        changes.update(
            vm1_uuid=self.ctx.resource_uuid("vm1"),
            vm2_uuid=self.ctx.resource_uuid("vm2"),
            volume_uuid=self.ctx.resource_uuid("data-volume"),
        )
        await self.ctx.update(**changes)
        self._local_image()  # a missing image file is named now, not after the hour-long install
        await self._resolve()  # fails early, with names, when the profile does not fit the platform

    def _local_image(self) -> Path | None:
        """The nested image file labbot serves (None when the profile gives only a URL); ConfigError if bad."""
        profile = self.ctx.profile
        path = profile.nested.image.local_path(PROJECT_DIR)
        return None if path is None else local_image(path, nested_image_problem(profile))

    async def _resolve(self) -> dict[str, str]:
        profile = self.ctx.profile
        report = await check_platform(self.outer, profile)  # images, offerings, networks, VXLAN pool, ranges
        report.raise_for_problems(profile)
        return report.uuids

    async def _lab_network(self, pool_uuid: str) -> str:
        """The lab's own private network (L2 VXLAN + L3 + range + Flat DHCP/Userdata), made once; its L3 uuid.

        Every part has a deterministic uuid and the lab's tag, so a re-run finds it, destroy deletes it, and
        the orphan sweep sees it if a destroy was lost.
        """
        spec = self.ctx.profile.lab_network
        assert spec is not None
        rid, tags = self.ctx.resource_uuid, [self.ctx.tag]
        l2 = await self.outer.network.create_l2_vxlan_network(self.ctx.resource_name("l2"), pool_uuid,
                                                      resource_uuid=rid("lab-l2"), user_tags=tags)
        l3 = await self.outer.network.create_l3_network(self.ctx.resource_name("net"), l2.uuid, category="Private",
                                                resource_uuid=rid("lab-l3"), user_tags=tags)
        start, end = spec.ip_range
        if not l3.ip_ranges:
            await self.outer.network.add_ip_range(l3.uuid, self.ctx.resource_name("range"), start, end,
                                          str(spec.network.netmask), spec.gateway, resource_uuid=rid("lab-ip-range"))
        # DHCP gives the VMs their addresses; Userdata brings VM2 (whose only, so default, network this is) its key.
        await self.outer.network.attach_flat_network_services(l3.uuid, ("DHCP", "Userdata"))
        return l3.uuid

    async def create_vms(self) -> None:
        """Create VM1 and VM2 side by side with labbot's key, wait for Running, record their addresses."""
        lab = await self.ctx.lab()
        uuids = await self._resolve()
        profile = self.ctx.profile
        password = await self.ctx.secret("host_password_enc")

        lab_l3 = await self._lab_network(uuids["vxlan_pool"]) if profile.lab_network is not None else None

        async def create(role: str, vm_uuid: str) -> VmInstanceInventory:
            spec = profile.vm1 if role == "vm1" else profile.vm2
            userdata = base64.b64encode(VM2_USERDATA.encode()).decode() if role == "vm2" else None
            l3s = [uuids[f"l3:{n}"] for n in spec.l3_networks] + ([lab_l3] if lab_l3 else [])
            existed = await self.outer.compute.get_vm(vm_uuid) is not None
            # A CPU mode is read when the VM starts: create it stopped, bind the mode, then start it.
            vm = await self.outer.compute.create_vm_instance(
                self.ctx.resource_name(role),
                image_uuid=uuids[f"{role}_image"],
                instance_offering_uuid=uuids[f"{role}_offering"],
                l3_network_uuids=l3s,
                default_l3_network_uuid=l3s[0],
                ssh_public_key=lab.ssh_public_key,
                root_password=password,
                system_tags=[f"userdata::{userdata}"] if userdata else None,
                user_tags=[self.ctx.tag],
                resource_uuid=vm_uuid,
                strategy="CreateStopped" if spec.cpu_mode else "InstantStart",
            )
            if spec.cpu_mode:
                await self._set_cpu_mode(vm, spec.cpu_mode)
            if not existed:
                # A new machine has a new host key: the pin of the VM it replaces (same lab, same role) would
                # refuse it as an interception. A key change of a VM that was not recreated is still refused.
                await self.ctx.connections.forget_host_key(role)
            return await self.outer.compute.wait_vm_state(vm.uuid, {"Running"})

        vm1, vm2 = await asyncio.gather(create("vm1", _known(lab.vm1_uuid, "VM1 uuid")),
                                        create("vm2", _known(lab.vm2_uuid, "VM2 uuid")))
        public = uuids[f"l3:{profile.vm1.l3_networks[0]}"]
        vpc = lab_l3 or uuids[f"l3:{profile.vpc_network}"]
        await self.ctx.update(
            vm1_public_ip=_nic_ip(vm1, public), vm1_vpc_ip=_nic_ip(vm1, vpc), vm2_ip=_nic_ip(vm2, vpc)
        )

    async def _set_cpu_mode(self, vm: VmInstanceInventory, mode: str) -> None:
        """Bind ``kvm/vm.cpuMode`` to the VM and start it; a VM that ran with another mode is restarted."""
        current = await self.outer.compute.get_resource_config("kvm", "vm.cpuMode", vm.uuid)
        if current != mode:
            await self.outer.compute.update_resource_config("kvm", "vm.cpuMode", vm.uuid, mode)
            if vm.state == "Running":
                await self.outer.compute.stop_vm(vm.uuid)
        await self.outer.compute.start_vm(vm.uuid)

    async def attach_volume(self) -> None:
        """Create VM1's data volume (once) and attach it to VM1."""
        lab = await self.ctx.lab()
        spec = self.ctx.profile.data_volume
        volume = await self.outer.compute.create_data_volume(
            self.ctx.resource_name("data"),
            disk_size=spec.size_gb * 1024**3,
            user_tags=[self.ctx.tag],
            resource_uuid=lab.volume_uuid,
        )
        await self.outer.compute.attach_data_volume(volume.uuid, _known(lab.vm1_uuid, "VM1 uuid"))

    async def wait_ssh(self) -> None:
        """Wait until VM1's sshd answers, then VM2's through VM1; host keys are pinned on first sight.

        Then make sure of what the nested ZStack needs from VM2 long after: vmx/svm in its CPU (its KVM host), an
        iSCSI initiator name (the target's ACL names it now, ZStack logs in with it later), and root's password
        accepted over SSH.
        """
        ssh = await self.ssh()
        await ssh.wait_ready("vm1", timeout=300)
        await ssh.wait_ready("vm2", timeout=300)
        await self._check_nested_virtualization(ssh)
        await self.vm2_initiator(ssh)
        await self._check_vm2_password(ssh)

    async def vm2_initiator(self, ssh: LabSSH) -> str:
        wanted = lab_initiator_name(self.ctx.profile.iscsi.iqn_prefix, self.ctx.lab_name)
        return await ensure_initiator_name(ssh.runner("vm2", timeout=60), wanted)

    async def _check_vm2_password(self, ssh: LabSSH) -> None:
        password = (await self.ctx.secret("host_password_enc")).get_secret_value()
        try:
            await ssh.check_password("vm2", password)
        except SSHAuthError:
            raise ExternalStepError(
                _("VM2 refuses SSH login with root's password, which the nested ZStack needs to add VM2 as "
                  "its KVM host and backup storage. labbot sends `ssh_pwauth: true` in VM2's userdata; check "
                  "that the VM2 image runs cloud-init and that nothing in it sets `PasswordAuthentication "
                  "no` afterwards")
            ) from None

    async def _check_nested_virtualization(self, ssh: LabSSH) -> None:
        """VM2 becomes the nested ZStack's KVM host, which needs vmx/svm: fail now, not after the install."""
        result = await ssh.run("vm2", "grep -m1 -o -w -E 'vmx|svm' /proc/cpuinfo", timeout=30, check=False)
        flag = result.stdout.strip()[:8]
        if flag in ("vmx", "svm"):
            await self.ctx.output("wait_ssh", f"VM2's CPU offers {flag}: nested virtualisation is available\n")
            return
        profile = self.ctx.profile
        if profile.vm2.cpu_mode is None:
            todo = (_("set `vm2.cpu_mode: host-passthrough` in profile {name} (labbot then sets "
                      "kvm/vm.cpuMode on VM2), or set the platform's global config kvm/vm.cpuMode to "
                      "host-passthrough").format(name=profile.name))
        else:
            todo = (_("VM2 runs with kvm/vm.cpuMode {cpu_mode}, so the lab platform's hosts do not offer "
                      "nested virtualisation: enable it on them (kvm_intel/kvm_amd `nested=1`) and `/lab "
                      "retry`").format(cpu_mode=profile.vm2.cpu_mode))
        raise ExternalStepError(_("VM2's /proc/cpuinfo shows neither vmx nor svm, so ZStack cannot use it as "
                                  "a KVM host: {todo}").format(todo=todo))

    # --- VM1: iSCSI ----------------------------------------------------------------------------------

    async def iscsi_target(self) -> None:
        """Export VM1's data disk as one LUN, admitting only VM2's initiator; record IQN and wwid."""
        lab = await self.ctx.lab()
        ssh = await self.ssh()

        on_vm1 = ssh.runner("vm1")
        profile = self.ctx.profile
        device = await find_data_disk(on_vm1, _known(lab.volume_uuid, "volume uuid"), profile.data_volume.data_disk)
        initiator = await self.vm2_initiator(ssh)
        backend = backend_for(profile.iscsi.backend, on_vm1)
        chap = await self.ctx.chap()
        info = await backend.ensure(
            TargetSpec(
                iqn=target_iqn(profile.iscsi.iqn_prefix, lab.name),
                device=device,
                initiator_iqn=initiator,
                portal_ip=_known(lab.vm1_vpc_ip, "VM1 VPC address"),
                port=profile.iscsi.port,
                chap_user=chap[0] if chap else None,
                chap_secret=chap[1] if chap else None,
            )
        )
        await self.ctx.output("iscsi_target", f"target {info.iqn} LUN {info.lun} on {device}, wwid {info.wwid}\n")
        await self.ctx.update(iscsi_iqn=info.iqn, iscsi_wwid=info.wwid, iscsi_size_bytes=info.size_bytes)

    # --- VM1: the nested image --------------------------------------------------------------------------

    async def serve_image(self) -> None:
        """Upload the nested image to VM1 (once, checksum verified) and serve it on VM1's VPC address."""
        local = self._local_image()
        if local is None:
            await self.ctx.output("serve_image", "the profile gives an image URL; nothing to serve\n")
            return
        lab = await self.ctx.lab()
        ssh = await self.ssh()
        spec = self.ctx.profile.nested.image
        address = _known(lab.vm1_vpc_ip, "VM1 VPC address")
        await self.ctx.progress("serve_image", f"uploading {local.name} to VM1", min_interval=0)
        remote = await upload_image(ssh, local)
        url = spec.download_url(address)
        done = await run_image_server(ssh, address=address, port=spec.serve_port, url=url)
        await self.ctx.output("serve_image", f"{remote} served at {url} ({done})\n")

    # --- VM2: ZStack ---------------------------------------------------------------------------------

    async def install_zstack(self) -> None:
        """Run the installer detached on VM2, stream its log as progress, wait for the management node.

        A run already started (this step resumed after a crash) is followed, not started again. A run that
        failed is not re-read forever: VM2 is cleaned up as the installer asks (see ``build.installer``) and
        the installer runs again with ``retry_command``, and the lab's thread says why.
        """
        ssh = await self.ssh()
        install = self.ctx.profile.install
        if install.mode == "baked":
            await self._start_baked()
            return
        status = await job_status(ssh, "vm2", INSTALL_JOB)
        template = install.command
        if status.state == "lost" or (status.state == "finished" and status.exit_code != 0):
            lost = status.state == "lost"
            what = (_("stopped without an exit code") if lost
                    else _("exited with status {exit_code}").format(exit_code=status.exit_code))
            done = await clean_failed_install(ssh, install.install_root) or _("removed nothing")
            await reset_job(ssh, "vm2", INSTALL_JOB)
            await self.ctx.note(
                "install_zstack",
                (
                    _(
                        "the previous ZStack install on VM2 {what}; the installer refuses a half-installed host "
                        "(`{install_root} is existing`), so labbot ran `zstack-ctl stop`, {done}, and runs the "
                        "installer again with `{format}`"
                    ).format(
                        what=what,
                        install_root=install.install_root,
                        done=done,
                        format=install.retry_command.format(installer="…"),
                    )
                ),
            )
            template, status = install.retry_command, JobStatus("absent")
        if status.state == "absent":
            installer = await self._installer(ssh)
            await start_detached(ssh, "vm2", INSTALL_JOB, template.format(installer=quote(installer)))

        code = await follow(
            ssh,
            "vm2",
            INSTALL_JOB,
            offset=0,
            on_lines=self._install_log,
            poll_interval=1.0,
            timeout=install.timeout_minutes * 60.0,
        )
        await self.ctx.flush("install_zstack")  # the installer's last lines and progress, whatever comes next
        if code != 0:
            raise ExternalStepError(
                _("the ZStack installer exited with status {code} (`/lab logs {lab_name} install_zstack`)").format(
                    code=code, lab_name=self.ctx.lab_name
                )
            )
        await self._management_node_up()

    async def _start_baked(self) -> None:
        """VM2's image has ZStack installed (``labbot bake``): give it this lab's identity and start it."""
        await self.ctx.progress("install_zstack", _("starting the ZStack of VM2's baked image"), min_interval=0)
        done = await self.start_baked_zstack()
        await self.ctx.output("install_zstack", f"baked image, no installer:\n{done}\n")
        await self._management_node_up()

    async def start_baked_zstack(self) -> str:
        """VM2's identity (key, machine-id, management IP) and ``zstack-ctl start`` (see ``build.baked``)."""
        lab = await self.ctx.lab()
        return await start_baked_zstack(
            await self.ssh(), vm2_ip=_known(lab.vm2_ip, "VM2 address"), public_key=lab.ssh_public_key or "",
            timeout=self.ctx.profile.install.timeout_minutes * 60.0,
        )

    async def _management_node_up(self) -> None:
        """Wait for the nested API, record its version, give the admin the lab's own password."""
        await self.ctx.progress("install_zstack", _("waiting for the management node API"), min_interval=0)
        nested = await self.nested()
        async with asyncio.timeout(600):
            while not await nested.is_ready():  # noqa: ASYNC110 - polling a remote API: no local event to wait on
                await asyncio.sleep(2)
        version = await nested.get_version()
        await self.ctx.output("install_zstack", f"management node ready, ZStack {version}\n")
        await self.own_admin_password()

    async def own_admin_password(self) -> None:
        """Give the nested admin the lab's own password (a fresh install has ZStack's default, the same in every
        lab): UpdateAccount as admin with the default, once; a re-run finds the lab's password already works."""
        mine = await self.nested_password()
        default = self.ctx.settings.nested_admin_password
        if mine.get_secret_value() == default.get_secret_value():
            return
        try:
            await (await self.nested()).login()
            return
        except ZStackAuthError:
            pass
        installed = await self.nested(password=default)
        try:
            await installed.change_password(mine)
        except ZStackAuthError:
            raise ExternalStepError(
                _(
                    "the nested ZStack accepts neither the lab's admin password nor the "
                    "installer's default (LABBOT_NESTED_ADMIN_PASSWORD); someone changed "
                    "it by hand"
                )
            ) from None
        await (await self.nested()).login()  # proves the change, and leaves the lab's client in use
        await self.ctx.output("install_zstack", "nested admin password set to the lab's own\n")

    async def _install_log(self, lines: list[str]) -> None:
        """One poll's installer lines: kept in one write, the last non-blank one as (throttled) progress."""
        await self.ctx.output_lines("install_zstack", lines)
        line = next((line.strip() for line in reversed(lines) if line.strip()), "")
        if line:
            match = _PERCENT.search(line)
            await self.ctx.progress("install_zstack", f"{match.group(1)}% — {line[:120]}" if match else line[:160])

    async def _installer(self, ssh: LabSSH) -> str:
        """The installer's path on VM2: uploaded there (``upload``), or found where the profile says it is."""
        install = self.ctx.profile.install
        if not install.upload:
            installer = await find_installer(ssh, install.installer_patterns)
            await self.ctx.output("install_zstack", f"installer: {installer}\n")
            return installer
        source = install.installer_patterns[0]
        local = Path(source) if Path(source).is_absolute() else PROJECT_ROOT / source
        remote = f"/root/labbot/{Path(source).name}"
        await ssh.run("vm2", "mkdir -p /root/labbot", timeout=30)
        await ssh.upload("vm2", local, remote, 0o755)
        return remote

    # --- nested ZStack -------------------------------------------------------------------------------

    async def nested_compute(self) -> None:
        """Zone, cluster, and VM2 itself as the KVM host (the client returns it Connected)."""
        lab = await self.ctx.lab()
        n = await self.nested()
        spec = self.ctx.profile.nested
        rid = self.ctx.resource_uuid
        zone = await n.infra.create_zone(spec.zone, resource_uuid=rid("nested-zone"))
        cluster = await n.infra.create_cluster(
            spec.cluster, zone.uuid, hypervisor_type="KVM", resource_uuid=rid("nested-cluster")
        )
        await self.ctx.set_nested(zone=zone.uuid, cluster=cluster.uuid)
        host = await n.infra.add_kvm_host(
            f"{lab.name}-vm2",
            _known(lab.vm2_ip, "VM2 address"),
            cluster.uuid,
            username="root",
            password=await self.ctx.secret("host_password_enc"),
            resource_uuid=rid("nested-host"),
        )
        if host.status != "Connected":
            raise ExternalStepError(
                _("the nested ZStack cannot use VM2 ({vm2_ip}) as a KVM host: {status}").format(
                    vm2_ip=lab.vm2_ip, status=host.status
                )
            )
        await self.ctx.set_nested(host=host.uuid)

    async def nested_storage(self) -> None:
        """iSCSI server VM1:3260 → cluster → the LUN with our wwid → SharedBlock primary storage."""
        lab = await self.ctx.lab()
        n = await self.nested()
        ids = lab.nested_ids
        rid = self.ctx.resource_uuid
        chap = await self.ctx.chap()
        server = await n.storage.add_iscsi_server(
            _known(lab.vm1_vpc_ip, "VM1 VPC address"),
            port=self.ctx.profile.iscsi.port,
            name=f"{lab.name}-vm1",
            chap_user_name=chap[0] if chap else None,
            chap_user_password=chap[1] if chap else None,
            resource_uuid=rid("nested-iscsi"),
        )
        await n.storage.attach_iscsi_server_to_cluster(server.uuid, ids["cluster"])
        storage = await n.storage.get_primary_storage(rid("nested-ps"))
        if storage is None:
            candidates = await n.storage.get_shared_block_candidates(ids["cluster"])
            wanted = next((c for c in candidates if c.wwid == lab.iscsi_wwid), None)
            if wanted is None:
                seen = ", ".join(c.wwid for c in candidates) or "none"
                raise ExternalStepError(
                    _("the nested ZStack does not see the LUN {iscsi_wwid} (candidates: {seen})").format(
                        iscsi_wwid=lab.iscsi_wwid, seen=seen
                    )
                )
            storage = await n.storage.add_shared_block_group_primary_storage(
                self.ctx.profile.nested.primary_storage,
                ids["zone"],
                [wanted.wwid],
                force_wipe=True,
                resource_uuid=rid("nested-ps"),
            )
        await n.storage.attach_primary_storage_to_cluster(storage.uuid, ids["cluster"])
        await self.ctx.set_nested(iscsi_server=server.uuid, primary_storage=storage.uuid)

    async def nested_network_image(self) -> None:
        """Backup storage and the image beside a flat L2/L3 network with an IP range and DHCP, and an offering.

        The image's calls (backup storage, its zone, the download) and the network's do not depend on each other,
        so they run at once: the image download is the longest call of the step.
        """
        lab = await self.ctx.lab()
        n = await self.nested()
        try:
            async with asyncio.TaskGroup() as group:
                image = group.create_task(self._nested_image(lab, n))
                network = group.create_task(self._nested_network(lab, n))
        except ExceptionGroup as failed:  # the other half was cancelled; the step reports its one error
            raise failed.exceptions[0] from None
        await self.ctx.set_nested(**image.result(), **network.result())

    async def _nested_image(self, lab: Lab, n: ZStackClient) -> dict[str, str]:
        spec = self.ctx.profile.nested
        bs = await n.storage.add_image_store_backup_storage(
            spec.backup_storage,
            _known(lab.vm2_ip, "VM2 address"),
            username="root",
            password=await self.ctx.secret("host_password_enc"),
            url=spec.backup_storage_url,
            resource_uuid=self.ctx.resource_uuid("nested-bs"),
        )
        await n.storage.attach_backup_storage_to_zone(bs.uuid, lab.nested_ids["zone"])
        await self.ctx.progress("nested_network_image", f"adding image {spec.image.name}", min_interval=0)
        image = await n.storage.add_image(
            spec.image.name,
            spec.image.download_url(_known(lab.vm1_vpc_ip, "VM1 VPC address")),
            [bs.uuid],
            format=spec.image.format,
            platform=spec.image.platform,
            resource_uuid=self.ctx.resource_uuid("nested-image"),
        )
        return {"backup_storage": bs.uuid, "image": image.uuid}

    async def _nested_network(self, lab: Lab, n: ZStackClient) -> dict[str, str]:
        ids = lab.nested_ids
        spec = self.ctx.profile.nested
        net = spec.network
        rid = self.ctx.resource_uuid
        vm2_ip = _known(lab.vm2_ip, "VM2 address")
        nic = net.physical_interface or await interface_carrying((await self.ssh()).runner("vm2", timeout=90), vm2_ip)
        await self.ctx.output("nested_network_image", f"nested L2 on VM2's {nic} (it holds {vm2_ip})\n")
        l2 = await n.network.create_l2_no_vlan_network(net.l2_name, ids["zone"], nic, resource_uuid=rid("nested-l2"))
        await n.network.attach_l2_network_to_cluster(l2.uuid, ids["cluster"])
        l3 = await n.network.create_l3_network(net.l3_name, l2.uuid, resource_uuid=rid("nested-l3"))
        await n.network.add_ip_range(
            l3.uuid,
            f"{net.l3_name}-range",
            net.ip_start,
            net.ip_end,
            net.netmask,
            net.gateway,
            resource_uuid=rid("nested-ip-range"),
        )
        await n.network.attach_flat_network_services(l3.uuid)
        offering = await n.compute.create_instance_offering(
            spec.offering.name,
            spec.offering.cpu_num,
            spec.offering.memory_mb * 1024**2,
            resource_uuid=rid("nested-offering"),
        )
        return {"l2": l2.uuid, "l3": l3.uuid, "offering": offering.uuid}

    async def nested_vm(self) -> None:
        """Create the nested VM with its root disk on the SharedBlock storage, and wait for Running."""
        lab = await self.ctx.lab()
        n = await self.nested()
        ids = lab.nested_ids
        vm = await n.compute.create_vm_instance(
            self.ctx.profile.nested.vm_name,
            image_uuid=ids["image"],
            instance_offering_uuid=ids["offering"],
            l3_network_uuids=[ids["l3"]],
            primary_storage_uuid_for_root_volume=ids["primary_storage"],
            resource_uuid=self.ctx.resource_uuid("nested-vm"),
        )
        vm = await n.compute.wait_vm_state(vm.uuid, {"Running"})
        await self.ctx.set_nested(vm=vm.uuid)

    async def first_health(self) -> None:
        """Run every health check once; the lab is ready only if all pass."""
        report = await self.health(self.ctx.lab_id)  # type: ignore[operator]
        failing = [c.name for c in report.checks if not c.ok]
        if failing:
            raise ExternalStepError(_("health checks failed: ") + ", ".join(failing))


def _known(value: str | None, what: str) -> str:
    """A lab field an earlier step records; its absence means the build's record is inconsistent."""
    if not value:
        raise ExternalStepError(_("the lab has no {what} recorded; an earlier step did not finish").format(what=what))
    return value


def _nic_ip(vm: VmInstanceInventory, l3_uuid: str) -> str:
    ip = vm.ip_on(l3_uuid)
    if not ip:
        raise ExternalStepError(
            _("VM {name} has no address on L3 network {l3_uuid}").format(name=vm.name, l3_uuid=l3_uuid)
        )
    return ip
