"""The ``targetcli`` backend (LIO, the kernel target of the real lab's CentOS/Rocky VM1).

State is read as JSON through rtslib-fb (installed with targetcli-fb), which names every object and carries
the storage object's unit serial, from which LIO builds the LUN's NAA designator and so the wwid. Changes are
made with plain ``targetcli <path> <command>`` calls: block backstore → iSCSI target (its TPG 1) → LUN → ACL
for VM2's initiator → portal. Only this lab's objects are then written into /etc/target/saveconfig.json
(restored at boot by the ``target`` service), leaving other entries alone.
"""

from __future__ import annotations

import logging
import posixpath

from services import shell
from services.iscsi import firewall, lio_config, vpd
from services.iscsi.base import Export, IscsiError, TargetInfo, TargetSpec, checked, device_size
from services.iscsi.lio_config import Config
from services.iscsi.naming import object_name
from services.ssh.result import CommandResult, Runner

log = logging.getLogger(__name__)

SAVE_FILE = "/etc/target/saveconfig.json"
_DUMP_CODE = "import json, rtslib_fb; print(json.dumps(rtslib_fb.RTSRoot().dump()))"
# EL8 ships rtslib for the platform python only; try the usual interpreter first.
_PYTHON = r"""
for p in python3 /usr/libexec/platform-python; do
  command -v "$p" >/dev/null 2>&1 && exec "$p" -c "$1"
done
echo "no python3 on this host" >&2; exit 127
"""
DUMP_COMMAND = shell.sh_c(_PYTHON, _DUMP_CODE)
WILDCARD = "0.0.0.0"  # noqa: S104 - a portal on every address already covers the wanted one


def _our_lun(target: lio_config.LioTarget | None, name: str) -> lio_config.LioLun | None:
    """The target's LUN backed by labbot's storage object ``name``."""
    if target is None:
        return None
    return next((lun for lun in target.luns if lun.storage_object == lio_config.so_path(name)), None)


class TargetcliBackend:
    """Configures one LIO target per lab with targetcli on VM1."""

    def __init__(self, run: Runner, *, save_file: str = SAVE_FILE) -> None:
        self._run = run
        self._save_file = shell.safe_path(save_file, absolute=True)

    async def _targetcli(self, path: str, *args: str | int) -> CommandResult:
        return await self._run("targetcli " + shell.join([path, *args]))

    async def _live(self) -> Config:
        result = checked(await self._run(DUMP_COMMAND), "reading the LIO configuration (rtslib-fb)")
        try:
            return lio_config.parse(result.stdout)
        except ValueError as err:
            raise IscsiError(f"unreadable LIO configuration from rtslib-fb: {err}") from None

    async def _require_targetcli(self) -> None:
        if not (await self._run("command -v targetcli")).ok:
            raise IscsiError("targetcli is not installed on VM1 (dnf install targetcli); the lab image needs it")

    async def ensure(self, spec: TargetSpec) -> TargetInfo:
        """Converge LIO on VM1 to ``spec`` and save this lab's part of the configuration."""
        await self._require_targetcli()
        await device_size(self._run, spec.device)
        name = object_name(spec.iqn)
        live = await self._live()
        so = lio_config.find_storage_object(live, name)
        if so is not None and so.get("dev") != spec.device:
            raise IscsiError(
                f"backstore {name} already uses {so.get('dev')}, not {spec.device}; "
                "labbot will not swap the disk under a live target (tear it down first)"
            )
        changed = False
        if so is None:
            checked(await self._targetcli("/backstores/block", "create", f"name={name}", f"dev={spec.device}"),
                    f"creating block backstore {name}")
            changed = True
        if lio_config.find_target(live, spec.iqn) is None:
            checked(await self._targetcli("/iscsi", "create", spec.iqn), f"creating target {spec.iqn}")
            changed = True
        if changed:  # creating a target may add TPG 1 and a default portal: look again
            live = await self._live()
        if await self._converge_tpg(live, spec, name):
            live = await self._live()
        target = lio_config.find_target(live, spec.iqn)
        lun = _our_lun(target, name)
        if target is None or lun is None or lun.index not in target.acls.get(spec.initiator_iqn, []):
            raise IscsiError(f"target {spec.iqn} is not configured as asked after the changes (LUN or ACL missing)")
        if spec.chap_user is not None and spec.chap_secret is not None and (
                not target.authentication
                or target.chap.get(spec.initiator_iqn) != (spec.chap_user, spec.chap_secret.get_secret_value())):
            # targetcli's exit status is not reliable; what the kernel holds is (real-hosts finding 11).
            raise IscsiError(f"target {spec.iqn} does not require the lab's CHAP login after the changes")
        await self._save(live, spec.iqn, name)
        checked(
            await self._run(
                "command -v systemctl >/dev/null 2>&1 || exit 0; systemctl is-enabled target >/dev/null 2>&1 || "
                "systemctl enable target"
            ),
            "enabling the target service at boot",
        )
        await firewall.open_port(self._run, spec.port, name)
        info = await self._info(lun, spec.iqn)
        log.info("LIO target %s ready: LUN %d wwid %s (%d bytes)", info.iqn, info.lun, info.wwid, info.size_bytes)
        return info

    async def _converge_tpg(self, live: Config, spec: TargetSpec, name: str) -> bool:
        """LUN, ACL and portal of the target's TPG; returns whether anything was changed."""
        target = lio_config.find_target(live, spec.iqn)
        if target is None:
            raise IscsiError(f"target {spec.iqn} does not exist after creating it")
        tpg = f"/iscsi/{spec.iqn}/tpg{target.tag}"
        changes: list[tuple[list[str | int], str]] = []
        lun = _our_lun(target, name)
        if lun is None:
            changes.append(([f"{tpg}/luns", "create", lio_config.so_path(name)], "creating the LUN"))
        if target.generate_node_acls:  # demo mode would admit every initiator: the ACL must be enforced
            changes.append(([tpg, "set", "attribute", "generate_node_acls=0"], "enforcing the ACL"))
        for initiator in target.acls:
            if initiator != spec.initiator_iqn:
                changes.append(([f"{tpg}/acls", "delete", initiator], f"removing ACL {initiator}"))
        if spec.initiator_iqn not in target.acls:
            # With targetcli's default auto_add_mapped_luns the new ACL maps every LUN of the TPG.
            changes.append(([f"{tpg}/acls", "create", spec.initiator_iqn], f"admitting {spec.initiator_iqn}"))
        elif lun is not None and lun.index not in target.acls[spec.initiator_iqn]:
            changes.append((
                [f"{tpg}/acls/{spec.initiator_iqn}", "create", f"mapped_lun={lun.index}",
                 f"tpg_lun_or_backstore=lun{lun.index}"],
                "mapping the LUN for the initiator",
            ))
        if spec.chap_user is not None and spec.chap_secret is not None:
            secret = spec.chap_secret.get_secret_value()
            if target.chap.get(spec.initiator_iqn) != (spec.chap_user, secret):
                changes.append(([f"{tpg}/acls/{spec.initiator_iqn}", "set", "auth", f"userid={spec.chap_user}",
                                 f"password={secret}"], f"setting CHAP for {spec.initiator_iqn}"))
            if not target.authentication:
                changes.append(([tpg, "set", "attribute", "authentication=1"], "requiring CHAP at login"))
        if not any(port == spec.port and ip in {WILDCARD, spec.portal_ip} for ip, port in target.portals):
            changes.append(([f"{tpg}/portals", "create", spec.portal_ip, spec.port],
                            f"adding portal {spec.portal_ip}:{spec.port}"))
        for argv, what in changes:
            checked(await self._targetcli(str(argv[0]), *argv[1:]), what)
        return bool(changes)

    async def _saved(self) -> Config:
        result = await self._run(f"cat {shell.quote(self._save_file)}")
        if not result.ok:
            return lio_config.empty()  # no saved configuration yet
        try:
            return lio_config.parse(result.stdout)
        except ValueError as err:
            raise IscsiError(f"{self._save_file} on VM1 is not valid JSON ({err}); fix or remove it") from None

    async def _write_saved(self, config: Config) -> None:
        # Like targetcli's own saveconfig: keep the previous file under backup/, write 0600, replace atomically.
        path, text = shell.quote(self._save_file), shell.quote(lio_config.render(config))
        tmp = shell.quote(self._save_file + ".labbot-tmp")
        backups = shell.quote(posixpath.join(posixpath.dirname(self._save_file), "backup"))
        checked(
            await self._run(
                f"umask 077 && mkdir -p {backups} && "
                f"{{ [ ! -f {path} ] || cp -p {path} {backups}/saveconfig-labbot-$(date +%Y%m%d-%H%M%S).json; }} && "
                f"printf '%s' {text} > {tmp} && mv {tmp} {path}"
            ),
            f"writing {self._save_file}",
        )

    async def _save(self, live: Config, iqn: str, name: str) -> None:
        saved = await self._saved()
        merged = lio_config.merge_lab(saved, live, iqn, name)
        if merged != saved:
            await self._write_saved(merged)
            log.info("saved LIO configuration of %s to %s", iqn, self._save_file)

    async def _info(self, lun: lio_config.LioLun, iqn: str) -> TargetInfo:
        return TargetInfo(
            iqn=iqn, lun=lun.index, wwid=vpd.lio_wwid(lun.wwn), size_bytes=await device_size(self._run, lun.dev),
            serial=lun.wwn,
        )

    async def describe(self, iqn: str) -> TargetInfo | None:
        """Target ``iqn`` as LIO has it now: its LUN on labbot's backstore, wwid from the unit serial, size."""
        name = object_name(shell.iqn(iqn))
        lun = _our_lun(lio_config.find_target(await self._live(), iqn), name)
        return None if lun is None else await self._info(lun, iqn)

    async def exports(self) -> list[Export]:
        """Every LUN of every iSCSI target LIO serves now, with its block backstore's device."""
        live = await self._live()
        found = []
        for raw in live["targets"]:
            target = lio_config.find_target(live, raw.get("wwn", "")) if raw.get("fabric") == "iscsi" else None
            for lun in target.luns if target is not None else ():
                admitted = tuple(name for name, mapped in target.acls.items() if lun.index in mapped)
                found.append(Export(iqn=target.iqn, lun=lun.index, wwid=vpd.lio_wwid(lun.wwn), backing=lun.dev,
                                    initiators=admitted, open_to_all=target.generate_node_acls,
                                    portals=tuple(target.portals)))
        return found

    async def teardown(self, iqn: str) -> None:
        """Delete the target and labbot's backstore, drop them from saveconfig.json, close the firewall port."""
        await self._require_targetcli()
        name = object_name(shell.iqn(iqn))
        live = await self._live()
        if lio_config.find_target(live, iqn) is not None:
            checked(await self._targetcli("/iscsi", "delete", iqn), f"deleting target {iqn}")
        if lio_config.find_storage_object(live, name) is not None:
            checked(await self._targetcli("/backstores/block", "delete", name), f"deleting backstore {name}")
        saved = await self._saved()
        trimmed = lio_config.remove_lab(saved, iqn, name)
        if trimmed != saved:
            await self._write_saved(trimmed)
        await firewall.close_ports(self._run, name)
        log.info("LIO target %s torn down", iqn)
