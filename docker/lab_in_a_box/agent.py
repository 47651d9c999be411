"""The agent in a lab-in-a-box VM container: be the VM the outer simulator says this container is.

    python -m lab_in_a_box.agent --role vm1     (the container's main process; tgtd runs beside it)

It polls ``/labs/<role>`` (see ``protocol``). A ``running`` plan adds the addresses ZStack allocated to the
container's interfaces (each on the interface whose network contains it) and starts sshd with the lab's key;
``stopped`` stops sshd and removes the addresses; ``expunged`` also wipes what the lab left (iSCSI targets,
the nested ZStack, uploaded files, the host key), so the next lab gets a fresh VM. After a container restart
everything is applied again from the files. Paths are parameters so the tests run it in a network namespace
with its files under a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab_in_a_box.protocol import DEFAULT_LABS, disk_path, netmask_prefix, read_json, role_dir, write_json
from lab_in_a_box.vmfiles import alive, run_command, set_root_password, write_vm_files

log = logging.getLogger(__name__)

NESTED_PID_FILE = "zstack-sandbox-mn.pid"  # written by sandbox/assets/zstack-installer.bin
SERIAL_LENGTH = 20  # a virtio disk's serial is the volume uuid cut to 20 characters


@dataclass(frozen=True)
class Paths:
    """Where the agent reads and writes; the defaults are the container's real locations."""

    labs: Path = DEFAULT_LABS
    etc: Path = Path("/etc")
    run: Path = Path("/run")
    by_id: Path = Path("/dev/disk/by-id")
    state: Path = Path("/var/lib/labbot-vm")
    home: Path = Path("/root")
    var_tmp: Path = Path("/var/tmp")


@dataclass
class Agent:
    """Applies plans for one role; ``step`` does one round, ``run`` loops."""

    role: str
    paths: Paths = field(default_factory=Paths)
    tgt_control_port: int = 0
    sshd_binary: str = "/usr/sbin/sshd"
    _generation: int | None = None
    _addresses: list[tuple[str, int, str]] = field(default_factory=list)
    _linked: set[str] = field(default_factory=set)
    _sshd: asyncio.subprocess.Process | None = None

    @property
    def ssh_dir(self) -> Path:
        return self.paths.state / "ssh"

    async def run(self, interval: float = 0.5) -> None:
        """Apply whatever the files say, every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await self.step()
            except Exception:
                log.exception("lab-in-a-box agent step failed; trying again")
            await asyncio.sleep(interval)

    async def step(self) -> None:
        """Apply a new plan (if any) and converge the attached volumes."""
        directory = role_dir(self.paths.labs, self.role)
        plan = read_json(directory / "plan.json")
        if plan is not None and plan.get("generation") != self._generation:
            error = None
            try:
                await self._apply(plan)
            except Exception as err:  # the hooks show this to the simulator's caller instead of timing out
                log.exception("could not apply %s", plan.get("name"))
                error = f"{type(err).__name__}: {err}"
            self._generation = plan.get("generation")
            write_json(directory / "applied.json", {"generation": self._generation, "state": plan.get("state"),
                                                    "vm_uuid": plan.get("vm_uuid"), "error": error})
        self._sync_volumes(directory)

    async def close(self) -> None:
        """Stop sshd (the container is going down)."""
        await self._stop_sshd()

    # --- power -------------------------------------------------------------------------------------

    async def _apply(self, plan: dict[str, Any]) -> None:
        state = plan.get("state")
        log.info("%s: applying %s (%s)", self.role, plan.get("name"), state)
        if state == "running":
            await self._power_on(plan)
        else:
            await self._power_off()
            if state == "expunged":
                await self._wipe()

    async def _power_on(self, plan: dict[str, Any]) -> None:
        wanted = [(str(ipaddress.IPv4Address(nic["ip"])), netmask_prefix(nic["netmask"])) for nic in plan["nics"]]
        await self._set_addresses(wanted)
        await asyncio.to_thread(write_vm_files, plan, etc=self.paths.etc, ssh_dir=self.ssh_dir, role=self.role)
        if plan.get("root_password") is not None:
            await set_root_password(self.paths.etc / "shadow", str(plan["root_password"]))
        await self._stop_sshd()
        config = self.ssh_dir / "sshd_config"
        self._sshd = await asyncio.create_subprocess_exec(self.sshd_binary, "-D", "-e", "-f", str(config))
        await asyncio.sleep(0.2)
        if self._sshd.returncode is not None:
            raise RuntimeError(f"sshd exited at once with status {self._sshd.returncode}")

    async def _power_off(self) -> None:
        await self._stop_sshd()
        await self._set_addresses([])

    async def _stop_sshd(self) -> None:
        process, self._sshd = self._sshd, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def _wipe(self) -> None:
        """What a new VM would not have: the lab's iSCSI targets, nested ZStack, files and host key."""
        await self._kill_nested()
        await self._clear_tgt()
        for leftover in (self.paths.home / "labbot", self.paths.var_tmp / "labbot", self.ssh_dir):
            shutil.rmtree(leftover, ignore_errors=True)
        for conf in (self.paths.etc / "tgt" / "conf.d").glob("*.conf"):
            conf.unlink(missing_ok=True)

    async def _kill_nested(self) -> None:
        pid_file = self.paths.run / NESTED_PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not alive(pid):
                    break
                await asyncio.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)

    async def _clear_tgt(self) -> None:
        base = ["tgtadm", "-C", str(self.tgt_control_port), "--lld", "iscsi"]
        code, out = await run_command(*base, "--op", "show", "--mode", "target")
        if code != 0:
            log.warning("tgtd did not answer (%s); no targets to remove", out.strip()[-200:])
            return
        for line in out.splitlines():
            if line.startswith("Target ") and ":" in line:
                tid = line.split()[1].rstrip(":")
                if tid.isdigit():
                    await run_command(*base, "--op", "delete", "--force", "--mode", "target", "--tid", tid)

    # --- addresses, ssh, password ----------------------------------------------------------------------

    async def _set_addresses(self, wanted: list[tuple[str, int]]) -> None:
        for ip, prefix, device in list(self._addresses):
            if (ip, prefix) not in wanted:
                await run_command("ip", "addr", "del", f"{ip}/{prefix}", "dev", device)
                self._addresses.remove((ip, prefix, device))
        have = {(ip, prefix) for ip, prefix, _ in self._addresses}
        for ip, prefix in wanted:
            if (ip, prefix) in have:
                continue
            device = await self._device_for(ip)
            code, out = await run_command("ip", "addr", "replace", f"{ip}/{prefix}", "dev", device)
            if code != 0:
                raise RuntimeError(f"cannot add {ip}/{prefix} to {device}: {out.strip()[-200:]}")
            self._addresses.append((ip, prefix, device))

    async def _device_for(self, ip: str) -> str:
        """The interface whose own (compose-assigned) network contains ``ip``."""
        code, out = await run_command("ip", "-j", "-4", "addr", "show")
        if code != 0:
            raise RuntimeError(f"cannot list addresses: {out.strip()[-200:]}")
        ours = {a for a, _, _ in self._addresses}
        address = ipaddress.IPv4Address(ip)
        for link in json.loads(out or "[]"):
            for info in link.get("addr_info", []):
                if info.get("local") in ours:
                    continue
                network = ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
                if address in network and network.prefixlen < 32:
                    return str(link["ifname"])
        raise RuntimeError(f"no interface of the {self.role} container is on a network containing {ip}; "
                           "check the compose file's lab-public / lab-vpc subnets")

    # --- volumes -------------------------------------------------------------------------------------

    def _sync_volumes(self, directory: Path) -> None:
        volumes, linked = directory / "volumes", directory / "linked"
        linked.mkdir(parents=True, exist_ok=True)
        wanted = {p.name for p in volumes.iterdir() if p.name.isalnum()} if volumes.is_dir() else set()
        for volume in sorted(wanted - self._linked):
            self.paths.by_id.mkdir(parents=True, exist_ok=True)
            link = self.paths.by_id / f"virtio-{volume[:SERIAL_LENGTH]}"
            link.unlink(missing_ok=True)
            link.symlink_to(disk_path(self.paths.labs, volume))
            (linked / volume).touch()
            self._linked.add(volume)
        for volume in sorted(self._linked - wanted) + sorted({p.name for p in linked.iterdir()} - wanted):
            (self.paths.by_id / f"virtio-{volume[:SERIAL_LENGTH]}").unlink(missing_ok=True)
            (linked / volume).unlink(missing_ok=True)
            self._linked.discard(volume)


async def _main(args: argparse.Namespace) -> None:
    root = Path(args.root)
    paths = Paths(labs=Path(args.labs), etc=root / "etc", run=root / "run", by_id=root / "dev/disk/by-id",
                  state=root / "var/lib/labbot-vm", home=root / "root", var_tmp=root / "var/tmp")
    agent = Agent(args.role, paths, tgt_control_port=args.tgt_control_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(agent.run(args.interval))
    await stop.wait()
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await agent.close()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: ``--role vm1|vm2`` [``--labs``, ``--root``, ``--interval``, ``--tgt-control-port``]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["vm1", "vm2"], required=True)
    parser.add_argument("--labs", default=str(DEFAULT_LABS), help="the directory shared with the simulator")
    parser.add_argument("--root", default="/", help="prefix of /etc, /run, /dev/disk/by-id ... (tests)")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--tgt-control-port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
