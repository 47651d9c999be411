"""The ``tgt`` backend (Linux SCSI target framework, user space): ``tgtadm`` live, a conf.d file for reboots.

State is read from ``tgtadm --op show``; each difference from the wanted target is fixed with one ``tgtadm``
call, so a second ``ensure`` issues no changes. The LUN gets a ``scsi_id``/``scsi_sn`` derived from the target
name: tgt builds VPD page 0x83 from ``scsi_id``, which fixes the wwid the nested ZStack will see (and keeps
it distinct between labs, where tgt's default ``IET 00010001`` would be the same on every VM1).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from services import shell
from services.iscsi import firewall, vpd
from services.iscsi.base import Export, IscsiError, TargetInfo, TargetSpec, checked, device_size
from services.iscsi.naming import object_name
from services.ssh.result import CommandResult, Runner

log = logging.getLogger(__name__)

CONF_DIR = "/etc/tgt/conf.d"
LUN = 1
_NOT_RUNNING = ("can't send the request to the tgt daemon", "failed to send request hdr to tgt daemon")
_INITIATOR_NAME = re.compile(r"^(iqn|eui|naa)\.")
WILDCARD = "0.0.0.0"  # noqa: S104 - a portal on every address already covers the wanted one


@dataclass
class TgtLun:
    """One logical unit as ``tgtadm --op show`` prints it."""

    lun: int
    type: str = ""
    scsi_id: str = ""
    scsi_sn: str = ""
    backing_path: str = ""


@dataclass
class TgtTarget:
    """One target as ``tgtadm --op show`` prints it; ``acls`` mixes addresses and initiator names, as tgt does."""

    tid: int
    iqn: str
    luns: dict[int, TgtLun] = field(default_factory=dict)
    acls: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)  # CHAP users bound to the target (incoming)


def parse_targets(text: str) -> list[TgtTarget]:
    """Parse ``tgtadm --lld iscsi --op show --mode target``."""
    targets: list[TgtTarget] = []
    section = ""
    lun: TgtLun | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if match := re.match(r"^Target (\d+): (\S+)$", raw):
            targets.append(TgtTarget(tid=int(match.group(1)), iqn=match.group(2)))
            section, lun = "", None
        elif not targets or not line:
            continue
        elif raw.startswith("    ") and not raw.startswith("     ") and line.endswith(":"):
            section = line[:-1]
        elif section == "LUN information" and (match := re.match(r"^LUN: (\d+)$", line)):
            lun = TgtLun(lun=int(match.group(1)))
            targets[-1].luns[lun.lun] = lun
        elif section == "LUN information" and lun is not None and ":" in line:
            key, _, value = line.partition(":")
            value = value.strip()
            if key == "Type":
                lun.type = value
            elif key == "SCSI ID":
                lun.scsi_id = value
            elif key == "SCSI SN":
                lun.scsi_sn = value
            elif key == "Backing store path":
                lun.backing_path = value
        elif section == "ACL information":
            targets[-1].acls.append(line)
        elif section == "Account information":
            targets[-1].accounts.append(line.removesuffix(" (outgoing)"))
    return targets


def parse_accounts(text: str) -> list[str]:
    """Parse ``tgtadm --lld iscsi --op show --mode account`` (``Account list:`` then one user per line)."""
    return [line.strip() for line in text.splitlines()[1:] if line.strip()]


def parse_portals(text: str) -> list[tuple[str, int]]:
    """Parse ``tgtadm --lld iscsi --op show --mode portal`` into (address, port) pairs."""
    portals = []
    for line in text.splitlines():
        if match := re.match(r"^Portal: (.+):(\d+),\d+$", line.strip()):
            portals.append((match.group(1), int(match.group(2))))
    return portals


def conf_file(iqn: str, conf_dir: str = CONF_DIR) -> str:
    """Where the target's persistent configuration lives on VM1."""
    return f"{conf_dir}/{object_name(iqn)}.conf"


def render_conf(spec: TargetSpec, scsi_id: str, scsi_sn: str) -> str:
    """The conf.d file ``tgt-admin`` loads at boot, equal to what ``ensure`` configures live."""
    return (
        f"# Managed by labbot; removed when the lab is destroyed. Live changes are made with tgtadm.\n"
        f"<target {spec.iqn}>\n"
        f"    <backing-store {spec.device}>\n"
        f"        lun {LUN}\n"
        f"        scsi_id {scsi_id}\n"
        f"        scsi_sn {scsi_sn}\n"
        f"    </backing-store>\n"
        f"    initiator-name {spec.initiator_iqn}\n"
        + (f"    incominguser {spec.chap_user} {spec.chap_secret.get_secret_value()}\n"
           if spec.chap_user and spec.chap_secret else "")
        + "</target>\n"
    )


class TgtBackend:
    """Configures one target per lab with tgt on VM1."""

    def __init__(self, run: Runner, *, conf_dir: str = CONF_DIR) -> None:
        self._run = run
        self._conf_dir = shell.safe_path(conf_dir, absolute=True)

    async def _tgtadm(self, *args: str | int) -> CommandResult:
        return await self._run("tgtadm --lld iscsi " + shell.join(list(args)))

    async def _show(self) -> list[TgtTarget]:
        result = await self._tgtadm("--op", "show", "--mode", "target")
        if not result.ok and any(marker in result.stderr for marker in _NOT_RUNNING):
            await self._start_daemon()
            result = await self._tgtadm("--op", "show", "--mode", "target")
        return parse_targets(checked(result, "reading tgt targets").stdout)

    async def _start_daemon(self) -> None:
        # On a systemd host the tgt service may just be stopped; anywhere else there is nothing we can do.
        result = await self._run("test -d /run/systemd/system && systemctl start tgt")
        if not result.ok:
            raise IscsiError("tgtd is not running on VM1 and could not be started (systemctl start tgt)")
        log.info("started the tgt service on VM1")

    async def ensure(self, spec: TargetSpec) -> TargetInfo:
        """Converge tgt on VM1 to ``spec``: target, LUN 1, identifiers, ACL, portal, conf.d file, firewall."""
        await device_size(self._run, spec.device)  # fails clearly if the disk is not there
        targets = await self._show()
        target = next((t for t in targets if t.iqn == spec.iqn), None)
        if target is None:
            tid = max((t.tid for t in targets), default=0) + 1
            checked(await self._tgtadm("--op", "new", "--mode", "target", "--tid", tid, "-T", spec.iqn),
                    f"creating target {spec.iqn}")
            target = TgtTarget(tid=tid, iqn=spec.iqn)
            log.info("tgt target %s created (tid %d)", spec.iqn, tid)
        tid = target.tid
        lun = target.luns.get(LUN)
        if lun is not None and lun.backing_path != spec.device:
            raise IscsiError(
                f"target {spec.iqn} already exports {lun.backing_path} as LUN {LUN}, not {spec.device}; "
                "labbot will not swap the disk under a live target (tear it down first)"
            )
        if lun is None:
            checked(
                await self._tgtadm("--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", LUN,
                                   "--backing-store", spec.device),
                f"adding {spec.device} as LUN {LUN}",
            )
            lun = TgtLun(lun=LUN, backing_path=spec.device)
        scsi_id, scsi_sn = vpd.scsi_id_for(spec.iqn, LUN), vpd.serial_for(spec.iqn, LUN)
        if (lun.scsi_id, lun.scsi_sn) != (scsi_id, scsi_sn):
            checked(
                await self._tgtadm("--op", "update", "--mode", "logicalunit", "--tid", tid, "--lun", LUN,
                                   "--params", f"scsi_id={scsi_id},scsi_sn={scsi_sn}"),
                "setting the LUN's identifiers",
            )
        await self._converge_acl(tid, target.acls, spec.initiator_iqn)
        await self._ensure_portal(spec.portal_ip, spec.port)
        await self._persist(spec, scsi_id, scsi_sn)
        await self._converge_chap(tid, target.accounts, spec)  # after _persist: it reads the secret from the file
        await firewall.open_port(self._run, spec.port, object_name(spec.iqn))
        info = await self.describe(spec.iqn)
        if info is None:
            raise IscsiError(f"target {spec.iqn} vanished right after it was configured")
        log.info("tgt target %s ready: LUN %d wwid %s (%d bytes)", info.iqn, info.lun, info.wwid, info.size_bytes)
        return info

    async def _converge_acl(self, tid: int, current: list[str], wanted: str) -> None:
        for entry in current:
            if entry == wanted:
                continue
            flag = "--initiator-name" if _INITIATOR_NAME.match(entry) else "--initiator-address"
            checked(await self._tgtadm("--op", "unbind", "--mode", "target", "--tid", tid, flag, entry),
                    f"removing ACL entry {entry}")
        if wanted not in current:
            checked(await self._tgtadm("--op", "bind", "--mode", "target", "--tid", tid, "--initiator-name", wanted),
                    f"admitting initiator {wanted}")

    async def _converge_chap(self, tid: int, bound: list[str], spec: TargetSpec) -> None:
        """With CHAP wanted: the account exists, it alone is bound to the target (tgtd then refuses a login
        without it). Without: the target's accounts are left as they are."""
        if spec.chap_user is None or spec.chap_secret is None:
            return
        listed = checked(await self._tgtadm("--op", "show", "--mode", "account"), "reading tgt accounts")
        if spec.chap_user not in parse_accounts(listed.stdout):
            # The secret is read on VM1 from the conf.d file just written, never put in a command line, so an
            # SSH error that quotes the command cannot carry it.
            user, path = shell.quote(spec.chap_user), shell.quote(conf_file(spec.iqn, self._conf_dir))
            secret = f"\"$(sed -n 's/^    incominguser '{user}' //p' {path})\""
            checked(await self._run(f"tgtadm --lld iscsi --op new --mode account --user {user} --password {secret}"),
                    f"creating the CHAP account {spec.chap_user}")
        for user in bound:
            if user != spec.chap_user:
                checked(await self._tgtadm("--op", "unbind", "--mode", "account", "--tid", tid, "--user", user),
                        f"unbinding CHAP account {user}")
        if spec.chap_user not in bound:
            checked(await self._tgtadm("--op", "bind", "--mode", "account", "--tid", tid, "--user", spec.chap_user),
                    f"requiring CHAP account {spec.chap_user} on the target")

    async def _ensure_portal(self, portal_ip: str, port: int) -> None:
        portals = parse_portals(
            checked(await self._tgtadm("--op", "show", "--mode", "portal"), "reading tgt portals").stdout
        )
        if any(port == p and address in {WILDCARD, portal_ip} for address, p in portals):
            return
        checked(await self._tgtadm("--op", "new", "--mode", "portal", "--param", f"portal={portal_ip}:{port}"),
                f"adding portal {portal_ip}:{port}")

    async def _persist(self, spec: TargetSpec, scsi_id: str, scsi_sn: str) -> None:
        path = conf_file(spec.iqn, self._conf_dir)
        content = render_conf(spec, scsi_id, scsi_sn)
        current = await self._run(f"cat {shell.quote(path)}")
        if not (current.ok and current.stdout == content):
            checked(
                await self._run(
                    f"mkdir -p {shell.quote(self._conf_dir)} && umask 077 && printf '%s' {shell.quote(content)} > "
                    f"{shell.quote(path + '.tmp')} && mv {shell.quote(path + '.tmp')} {shell.quote(path)}"
                ),
                f"writing {path}",
            )
        # The conf file only helps if the tgt service starts at boot.
        enabled = await self._run(
            "command -v systemctl >/dev/null 2>&1 || exit 0; systemctl is-enabled tgt >/dev/null 2>&1 || "
            "systemctl enable tgt"
        )
        checked(enabled, "enabling the tgt service at boot")

    async def describe(self, iqn: str) -> TargetInfo | None:
        """Target ``iqn`` as tgt has it now (LUN 1, its wwid from ``scsi_id``, size of its backing store)."""
        target = next((t for t in await self._show() if t.iqn == shell.iqn(iqn)), None)
        if target is None or LUN not in target.luns:
            return None
        lun = target.luns[LUN]
        return TargetInfo(
            iqn=iqn, lun=LUN, wwid=vpd.tgt_wwid(lun.scsi_id), size_bytes=await device_size(self._run, lun.backing_path),
            serial=lun.scsi_sn,
        )

    async def exports(self) -> list[Export]:
        """Every disk LUN tgt exports now; tgt's portals are global, so each LUN lists all of them."""
        targets = await self._show()
        portals = tuple(parse_portals(
            checked(await self._tgtadm("--op", "show", "--mode", "portal"), "reading tgt portals").stdout
        ))
        return [
            Export(iqn=t.iqn, lun=lun.lun, wwid=vpd.tgt_wwid(lun.scsi_id), backing=lun.backing_path,
                   initiators=tuple(a for a in t.acls if _INITIATOR_NAME.match(a)), open_to_all="ALL" in t.acls,
                   portals=portals)
            for t in targets for lun in t.luns.values() if lun.type == "disk" and lun.backing_path
        ]

    async def teardown(self, iqn: str) -> None:
        """Delete the target (dropping sessions), its conf.d file, and the firewall port if labbot opened it."""
        target = next((t for t in await self._show() if t.iqn == shell.iqn(iqn)), None)
        if target is not None:
            checked(await self._tgtadm("--op", "delete", "--force", "--mode", "target", "--tid", target.tid),
                    f"deleting target {iqn}")
            log.info("tgt target %s deleted (tid %d)", iqn, target.tid)
        checked(await self._run(f"rm -f {shell.quote(conf_file(iqn, self._conf_dir))}"), "removing the conf file")
        await firewall.close_ports(self._run, object_name(iqn))
