"""A sandbox VM: a network namespace running a real sshd (and tgtd) with private mounts, like a small Linux VM.

Boot (``start_vm``): make the namespace and its NICs, write what cloud-init would (host key, authorized keys,
root password, hostname), then run ``boot.sh`` inside ``ip netns exec NS unshare --mount --uts``.
boot.sh gives the VM private copies of ``/etc /dev /root /tmp /var/tmp /opt /usr/local`` (overlays whose upper
layers live in the VM's directory, so writes stay in the VM and survive a stop/start like a disk) and a fresh
``/run``; it starts ``tgtd`` (restoring targets from ``/etc/tgt/conf.d`` as the tgt service does) and execs ``sshd``.
The VM runs until ``stop_vm`` kills every process in its namespace.

``/dev/disk/by-id`` inside the VM is a bind mount of the VM directory's ``by-id``: attaching a volume is making
a ``virtio-<serial>`` symlink there, exactly where a KVM virtio disk appears.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from sandbox import network, sshd, system
from sandbox.config import SandboxConfig, short
from sandbox.system import SandboxError
from sandbox.zstack_sim.hooks import VmPlan

log = logging.getLogger(__name__)

OVERLAID = ("/etc", "/dev", "/root", "/tmp", "/var/tmp", "/opt", "/usr/local")
INSTALLER = Path(__file__).resolve().parent / "assets" / "zstack-installer.bin"
# Where a ZStack ISO OS keeps its installer: /opt/zstack-dvd/<arch>/<release>/ (h84r: Helix 8.4, ZStack 4.8+).
INSTALLER_IN_VM = "/opt/zstack-dvd/x86_64/h84r/zstack-installer.bin"
ENV_FILE = "labbot-sandbox.env"  # /etc/labbot-sandbox.env inside the VM
# The DNS server each VM is given, as on an offline lab platform: one that never answers. Its address is routed
# to a veth pair inside the VM's own namespace, so a lookup waits out the resolver's timeouts (glibc: 2 x 5 s)
# as on the real thing, and no query leaves the VM, whatever the host forwards.
SILENT_DNS = "198.19.255.53"


@dataclass(frozen=True)
class VmRecord:
    """What the sandbox remembers about a VM (``vm.json`` in its directory)."""

    uuid: str
    name: str
    hostname: str
    netns: str
    netns_inode: int | None
    nics: list[dict[str, str]]


def _layer(vm_dir: Path, path: str) -> Path:
    return vm_dir / "layers" / path.strip("/").replace("/", "-")


def _hostname(name: str, vm_uuid: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")[:40]
    return cleaned or f"vm-{short(vm_uuid)}"


def boot_script(vm_dir: Path, hostname: str) -> str:
    """boot.sh: private mounts, hostname, tgtd (+ restore of persisted targets), then sshd in the foreground."""
    q = shlex.quote
    lines = ["#!/bin/sh", "# Runs inside the VM's network, mount and UTS namespaces.", "set -eu"]
    lines.append(f"vm={q(str(vm_dir))}")
    for path in OVERLAID:
        layer = _layer(vm_dir, path)
        lines.append(
            f"mount -t overlay overlay -o lowerdir={path},upperdir={q(str(layer / 'upper'))},"
            f"workdir={q(str(layer / 'work'))} {path}"
        )
    lines += [
        # The host's /dev sub-mounts are hidden under the overlay: give the VM its own.
        "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts",
        "rm -f /dev/ptmx && ln -s pts/ptmx /dev/ptmx",
        "mount -t tmpfs -o mode=1777 tmpfs /dev/shm",
        "mkdir -p /dev/disk/by-id && mount --bind \"$vm/by-id\" /dev/disk/by-id",
        "mount -t tmpfs -o mode=0755 tmpfs /run",
        # What the guest's CPU shows: vmx/svm only when its CPU mode passes them through (see cpuinfo()).
        "mount --bind \"$vm/cpuinfo\" /proc/cpuinfo",
        "mkdir -p /run/sshd /run/tgtd /run/lock",
        f"hostname {q(hostname)}",
        '/usr/sbin/tgtd -f >> "$vm/tgtd.log" 2>&1 &',
        # Like the tgt service at boot: once tgtd answers, load the targets persisted in /etc/tgt/conf.d.
        "( i=0; until tgtadm --lld iscsi --op show --mode sys >/dev/null 2>&1 || [ $i -ge 100 ]; do"
        " i=$((i+1)); sleep 0.1; done;"
        ' if ls /etc/tgt/conf.d/*.conf >/dev/null 2>&1 && command -v tgt-admin >/dev/null; then'
        ' tgt-admin -e >> "$vm/tgtd.log" 2>&1 || true; fi ) &',
        'exec /usr/sbin/sshd -D -e -f "$vm/ssh/sshd_config"',
        "",
    ]
    return "\n".join(lines)


async def _set_root_password(etc_upper: Path, password: str) -> None:
    """Give the VM's root the password from the plan, in the VM's own /etc/shadow (the host's stays untouched)."""
    hashed = await system.run("openssl", "passwd", "-6", "-stdin", stdin=password.encode() + b"\n")
    entries = (await asyncio.to_thread(Path("/etc/shadow").read_text)).splitlines()
    rewritten = []
    for entry in entries:
        fields = entry.split(":")
        if fields[0] == "root" and len(fields) > 2:
            fields[1] = hashed.stdout.strip()
        rewritten.append(":".join(fields))
    shadow = etc_upper / "shadow"
    shadow.touch(mode=0o600)
    shadow.chmod(0o600)
    shadow.write_text("\n".join(rewritten) + "\n")


_VIRT_FLAGS = ("vmx", "svm")
CPUINFO_FILE = "labbot-sandbox-cpuinfo"  # /etc/<this> in a container VM, which cannot mount over /proc/cpuinfo


def cpuinfo(host_cpuinfo: str, *, nested_virtualization: bool) -> str:
    """The VM's /proc/cpuinfo: the host's, with the hardware-virtualisation flag only when the VM's CPU mode
    passes it through (ZStack's ``kvm/vm.cpuMode`` host-model / host-passthrough), as a KVM guest sees it."""
    lines = []
    vendor = ""
    for line in host_cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if key.strip() == "vendor_id":
            vendor = value.strip()
        if sep and key.strip() in ("flags", "Features"):
            flags = [f for f in value.split() if f not in _VIRT_FLAGS]
            if nested_virtualization:
                flags.append("svm" if vendor == "AuthenticAMD" else "vmx")
            line = f"{key}: {' '.join(flags)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def password_login_allowed(user_data: str | None) -> bool:
    """Whether cloud-init would let sshd accept passwords: only when the userdata says ``ssh_pwauth: true``.

    The images this stands for are RHEL-family cloud images, whose cloud.cfg ships ``ssh_pwauth: 0`` (cloud-init
    then writes ``PasswordAuthentication no``); ZStack's own userdata part (root password, SSH key) does not
    change that. ``user_data`` is the ``userdata::`` system tag's value, base64 as ZStack takes it.
    """
    if not user_data:
        return False
    try:
        text = base64.b64decode(user_data, validate=True).decode()
        config = yaml.safe_load(text) if text.startswith("#cloud-config") else None
    except (ValueError, UnicodeDecodeError, yaml.YAMLError):
        log.warning("sandbox VM userdata is not base64 cloud-config; ignored as cloud-init would")
        return False
    value = config.get("ssh_pwauth") if isinstance(config, dict) else None
    return value is True or (isinstance(value, str) and value.lower() in {"true", "yes", "1"}) or value == 1


async def prepare_files(config: SandboxConfig, plan: VmPlan, netns: str) -> tuple[Path, str]:
    """Everything cloud-init would write, in the VM directory; returns (dir, hostname).

    No iSCSI initiator name: a fresh ZStack ISO host gets one when the KVM host deploy installs the initiator
    (the nested simulator's AddKVMHost does that here), or when labbot writes it."""
    vm_dir = config.vm_dir(plan.vm_uuid)
    if plan.image_uuid and not (vm_dir / "layers").exists():
        await _seed_from_image(config, plan.image_uuid, vm_dir)
    for path in OVERLAID:
        for part in ("upper", "work"):
            _layer(vm_dir, path).joinpath(part).mkdir(parents=True, exist_ok=True)
    (vm_dir / "by-id").mkdir(parents=True, exist_ok=True)
    ssh_dir = vm_dir / "ssh"
    sshd.ensure_host_key(ssh_dir)
    sshd.write_authorized_keys(ssh_dir, plan.ssh_public_keys)
    sshd.write_config(ssh_dir, passwords=plan.root_password is not None and password_login_allowed(plan.user_data))
    etc_upper = _layer(vm_dir, "/etc") / "upper"
    if plan.root_password is not None:
        await _set_root_password(etc_upper, plan.root_password)
    if plan.image_name in config.zstack_images:
        placed = _layer(vm_dir, "/opt") / "upper" / INSTALLER_IN_VM.removeprefix("/opt/")
        placed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(INSTALLER, placed)
    hostname = _hostname(plan.name, plan.vm_uuid)
    (etc_upper / "hostname").write_text(hostname + "\n")
    (etc_upper / "resolv.conf").write_text(f"nameserver {SILENT_DNS}\n")  # what DHCP or cloud-init would write
    env = {
        "LABBOT_SANDBOX_DIR": str(config.base_dir),
        "LABBOT_SANDBOX_VM": plan.vm_uuid,
        "LABBOT_PYTHON": config.nested_sim[0],
        "LABBOT_NESTED_SIM": shlex.join(config.nested_sim),
        "LABBOT_INSTALL_SECONDS": f"{config.install_seconds:g}",
    }
    (etc_upper / ENV_FILE).write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    host_cpuinfo = await asyncio.to_thread(Path("/proc/cpuinfo").read_text)
    (vm_dir / "cpuinfo").write_text(cpuinfo(host_cpuinfo, nested_virtualization=plan.nested_virtualization))
    (vm_dir / "boot.sh").write_text(boot_script(vm_dir, hostname))
    return vm_dir, hostname


async def _seed_from_image(config: SandboxConfig, image_uuid: str, vm_dir: Path) -> None:
    """A new VM's disk from a template made of another VM (``copy_root_disk``); a plain image has none."""
    layers = config.image_dir(image_uuid) / "layers"
    if layers.is_dir():
        await asyncio.to_thread(vm_dir.mkdir, parents=True, exist_ok=True)
        await system.run("cp", "-a", str(layers), str(vm_dir / "layers"), timeout=300)
        log.info("sandbox VM %s starts from the files of image %s", vm_dir.name, image_uuid)


async def copy_root_disk(config: SandboxConfig, vm_uuid: str, image_uuid: str) -> int:
    """Make an image of the VM's root disk: its overlay upper layers (everything written on it since it was
    created: an installed ZStack, say), copied with owners, modes and overlay whiteouts. Host keys are not on
    it (they live beside the layers), so a VM made from the image gets its own, as a new cloud-init instance
    does. Returns the bytes copied."""
    source = config.vm_dir(vm_uuid) / "layers"
    if not source.is_dir():
        raise SandboxError(f"VM {vm_uuid} has no disk in the sandbox")
    target = config.image_dir(image_uuid)
    if target.exists():
        await asyncio.to_thread(shutil.rmtree, target)
    await asyncio.to_thread(target.mkdir, parents=True)
    await system.run("cp", "-a", str(source), str(target / "layers"), timeout=300)
    for work in (target / "layers").glob("*/work"):  # overlayfs scratch space, not the disk's contents
        await asyncio.to_thread(shutil.rmtree, work, True)
    usage = await system.run("du", "-sb", str(target))
    return int(usage.stdout.split()[0])


async def start_vm(config: SandboxConfig, plan: VmPlan, segment_lock: asyncio.Lock) -> VmRecord:
    """Boot a VM from its plan; returns once its sshd listens. Starting a running VM restarts it."""
    netns = config.vm_netns(plan.vm_uuid)
    for nic in plan.nics:  # refuse a bad plan before touching anything
        network.nic_network(nic)
        short(nic.l3_network_uuid)
    existing = read_record(config, plan.vm_uuid)
    if existing is not None and existing.uuid != plan.vm_uuid:
        raise SandboxError(f"VM {plan.vm_uuid} collides with VM {existing.uuid} (same first 8 digits)")
    await stop_vm(config, plan.vm_uuid)
    vm_dir, hostname = await prepare_files(config, plan, netns)
    await system.run("ip", "netns", "add", netns)
    try:
        await system.ip("link", "set", "lo", "up", netns=netns)
        # A jump host, not a router: VM1 must not forward between the public network and the VPC.
        await system.run("ip", "netns", "exec", netns, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")
        await _silent_dns(netns)
        nics = []
        for index, nic in enumerate(plan.nics):
            public = nic.l3_network_name in config.public_l3_names
            async with segment_lock:
                bridge = await network.ensure_public_bridge(config, nic.gateway, nic.netmask) if public else None
                segment = None if public else await network.ensure_private_segment(config, nic.l3_network_uuid)
            device = await network.plug_nic(
                config, vm_uuid=plan.vm_uuid, vm_netns=netns, index=index, nic=nic, public_bridge=bridge,
                segment_netns=segment,
            )
            if nic.is_default and public and nic.gateway:
                await system.ip("route", "add", "default", "via", nic.gateway, "dev", device, netns=netns)
            nics.append({"device": device, "ip": nic.ip, "netmask": nic.netmask, "l3": nic.l3_network_name})
        record = VmRecord(
            uuid=plan.vm_uuid, name=plan.name, hostname=hostname, netns=netns, netns_inode=system.netns_inode(netns),
            nics=nics,
        )
        (vm_dir / "vm.json").write_text(json.dumps(asdict(record), indent=2))
        await _boot(config, vm_dir, netns)
    except BaseException:
        await stop_vm(config, plan.vm_uuid)
        raise
    log.info("sandbox VM %s (%s) running in %s: %s", plan.name, plan.vm_uuid, netns, [n["ip"] for n in nics])
    return record


async def _silent_dns(netns: str) -> None:
    """Route SILENT_DNS into a veth pair inside the VM: the queries are sent and nobody ever reads them."""
    await system.ip("link", "add", "dns0", "type", "veth", "peer", "name", "dns1", netns=netns)
    for link in ("dns0", "dns1"):
        await system.ip("link", "set", link, "up", netns=netns)
    await system.ip("route", "add", f"{SILENT_DNS}/32", "dev", "dns0", netns=netns)
    await system.ip("neigh", "add", SILENT_DNS, "lladdr", "02:00:00:00:00:53", "dev", "dns0", "nud", "permanent",
                    netns=netns)


async def _boot(config: SandboxConfig, vm_dir: Path, netns: str) -> None:
    console = vm_dir / "console.log"
    start = console.stat().st_size if console.exists() else 0
    (vm_dir / "pid").unlink(missing_ok=True)
    # A PID namespace too: sshd becomes the VM's PID 1 and, like an init, reaps orphans (detached jobs), and
    # killing it ends the whole VM. setsid --fork: the VM outlives this process and leaves it no zombie.
    argv = [
        "setsid", "--fork", "ip", "netns", "exec", netns, "unshare", "--mount", "--uts", "--pid", "--fork",
        "--mount-proc", "--propagation", "private", "/bin/sh", str(vm_dir / "boot.sh"),
    ]
    with console.open("ab") as out:
        await asyncio.to_thread(subprocess.run, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=True)
    inode = system.netns_inode(netns)
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + config.sshd_ready_timeout
    text = ""
    while loop.time() < deadline:
        with console.open("rb") as handle:
            handle.seek(start)
            text = handle.read().decode(errors="replace")
        init = init_pid(inode) if inode else None
        if "Server listening on" in text and init is not None:
            (vm_dir / "pid").write_text(f"{init}\n")
            return
        if loop.time() - started > 1 and inode and not system.pids_in_netns({inode}):
            break  # everything in the VM exited: the boot failed
        await asyncio.sleep(0.05)
    raise SandboxError(f"sandbox VM in {netns} did not start sshd; console:\n{text[-1500:]}")


def init_pid(netns_inode: int) -> int | None:
    """The host pid of the VM's PID 1 (its sshd), found among the processes of its network namespace."""
    for pid in system.pids_in_netns({netns_inode}):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:"):
                ids = line.split()[1:]
                if len(ids) >= 2 and ids[-1] == "1":
                    return pid
    return None


def read_record(config: SandboxConfig, vm_uuid: str) -> VmRecord | None:
    """The VM's record, if the sandbox knows it."""
    try:
        data = json.loads((config.vm_dir(vm_uuid) / "vm.json").read_text())
    except (OSError, ValueError):
        return None
    return _record(data)


def _record(data: dict[str, object]) -> VmRecord:
    """A record from vm.json; keys of older sandbox versions (e.g. ``initiator``) are ignored, so ``down`` still
    finds a VM an older version left behind."""
    known = set(VmRecord.__dataclass_fields__)
    return VmRecord(**{k: v for k, v in data.items() if k in known})  # type: ignore[arg-type]


def all_records(config: SandboxConfig) -> list[VmRecord]:
    """Every VM the sandbox knows (running or stopped)."""
    records = []
    if config.vms_dir.is_dir():
        for path in sorted(config.vms_dir.glob("*/vm.json")):
            try:
                records.append(_record(json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                log.warning("unreadable sandbox VM record %s", path)
    return records


async def kill_netns_processes(inodes: set[int], grace: float = 0.5) -> int:
    """SIGTERM, then SIGKILL, every process in these network namespaces; returns how many there were."""
    pids = system.pids_in_netns(inodes)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    await _wait_until(lambda: not any(system.pid_alive(p) for p in pids), grace)
    for pid in system.pids_in_netns(inodes):  # tgtd ignores SIGTERM; anything left now is killed
        _signal(pid, signal.SIGKILL)
    await _wait_until(lambda: not system.pids_in_netns(inodes), 5.0)
    return len(pids)


async def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:  # noqa: ASYNC109
    """Poll ``condition`` (process state has no event to wait on) until it holds or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


async def stop_vm(config: SandboxConfig, vm_uuid: str) -> None:
    """Power the VM off: kill all its processes and remove its namespace and NICs (its files stay)."""
    netns = config.vm_netns(vm_uuid)
    inodes = {i for i in (system.netns_inode(netns), getattr(read_record(config, vm_uuid), "netns_inode", None)) if i}
    if inodes:
        await kill_netns_processes(inodes)
    if netns in await system.list_netns():
        await system.run("ip", "netns", "del", netns)
    # Veth peers die with the namespace; a half-made NIC from a failed start may be left on the host side.
    for link in await system.list_links():
        if link.startswith(f"{config.prefix}{short(vm_uuid)}"):
            await system.ip("link", "del", link, check=False)


async def expunge_vm(config: SandboxConfig, vm_uuid: str) -> None:
    """Stop the VM and delete everything of it (its volumes' files are separate: see ``volumes``)."""
    await stop_vm(config, vm_uuid)
    vm_dir = config.vm_dir(vm_uuid)
    if vm_dir.exists():
        await asyncio.to_thread(shutil.rmtree, vm_dir)
    log.info("sandbox VM %s expunged", vm_uuid)
