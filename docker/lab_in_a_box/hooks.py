"""``ComposeHooks``: the outer simulator's hooks when its VMs are the compose file's ``vm1`` and ``vm2`` containers.

The containers exist before any lab does, so the lab-in-a-box holds one lab at a time: the VM named
``<prefix>-<lab>-vm1`` becomes the ``vm1`` container and ``...-vm2`` the ``vm2`` container. Each hook writes
what the VM should be into ``/labs`` and waits (bounded) until the container's agent says it applied it, so
``CreateVmInstance`` answers only once sshd listens on the addresses ZStack allocated.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from lab_in_a_box.protocol import DEFAULT_LABS, ROLES, disk_path, read_json, role_dir, write_json
from sandbox.zstack_sim.hooks import VmPlan

log = logging.getLogger(__name__)


class ComposeHooks:
    """OuterHooks driving the two VM containers through the shared ``/labs`` directory."""

    def __init__(self, labs: Path | None = None, *, timeout: float = 120.0, poll: float = 0.2) -> None:
        self.labs = labs or Path(os.environ.get("LABBOT_LABS_DIR", str(DEFAULT_LABS)))
        self.timeout = timeout
        self.poll = poll

    async def vm_started(self, plan: VmPlan) -> None:
        """Make the matching container this VM (its addresses, key and password); wait until it is."""
        role = self._role_for(plan.name)
        current = read_json(role_dir(self.labs, role) / "plan.json")
        if current and current.get("state") != "expunged" and current.get("vm_uuid") != plan.vm_uuid:
            raise RuntimeError(f"the lab-in-a-box holds one lab at a time: the {role} container is "
                               f"{current.get('name')}; destroy that lab first")
        await self._write_plan(role, {
            "vm_uuid": plan.vm_uuid, "name": plan.name, "state": "running",
            "nics": [{"ip": nic.ip, "netmask": nic.netmask, "l3": nic.l3_network_name} for nic in plan.nics],
            "ssh_public_keys": list(plan.ssh_public_keys), "root_password": plan.root_password,
        })

    async def vm_stopped(self, vm_uuid: str) -> None:
        """Power the container's VM off: sshd stops and the lab addresses go away."""
        role = self._role_of(vm_uuid)
        if role is not None:
            await self._set_state(role, "stopped")

    async def vm_expunged(self, vm_uuid: str) -> None:
        """Reset the container for the next lab (keys, addresses, iSCSI targets, the nested ZStack)."""
        role = self._role_of(vm_uuid)
        if role is not None:
            await self._set_state(role, "expunged")

    async def volume_attached(self, volume_uuid: str, size: int, vm_uuid: str) -> None:
        """Create the volume's sparse file and have the VM's container show it under /dev/disk/by-id."""
        role = self._role_of(vm_uuid)
        if role is None:
            raise RuntimeError(f"vm {vm_uuid} is not one of the lab-in-a-box containers")
        disk = disk_path(self.labs, volume_uuid)
        disk.parent.mkdir(parents=True, exist_ok=True)
        with disk.open("ab") as handle:
            handle.truncate(max(size, disk.stat().st_size))
        marker = role_dir(self.labs, role) / "volumes" / volume_uuid
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(size))
        await self._wait(lambda: (role_dir(self.labs, role) / "linked" / volume_uuid).exists(),
                         f"the {role} container to attach volume {volume_uuid}")

    async def volume_detached(self, volume_uuid: str, vm_uuid: str) -> None:
        """Take the disk away from the VM's container (the data stays in its file)."""
        role = self._role_of(vm_uuid)
        if role is None:
            return
        (role_dir(self.labs, role) / "volumes" / volume_uuid).unlink(missing_ok=True)
        await self._wait(lambda: not (role_dir(self.labs, role) / "linked" / volume_uuid).exists(),
                         f"the {role} container to detach volume {volume_uuid}")

    async def volume_expunged(self, volume_uuid: str) -> None:
        """Delete the volume's file."""
        for role in ROLES:
            (role_dir(self.labs, role) / "volumes" / volume_uuid).unlink(missing_ok=True)
        disk_path(self.labs, volume_uuid).unlink(missing_ok=True)

    async def l3_network_deleted(self, l3_uuid: str) -> None:
        """Nothing to remove: the compose networks outlive every lab (one lab at a time runs here)."""
        return None

    # --- helpers -----------------------------------------------------------------------------------

    def _role_for(self, name: str) -> str:
        for role in ROLES:
            if name.endswith(f"-{role}"):
                return role
        raise RuntimeError(f"the lab-in-a-box only has a lab's vm1 and vm2 containers; cannot start VM {name!r}")

    def _role_of(self, vm_uuid: str) -> str | None:
        for role in ROLES:
            plan = read_json(role_dir(self.labs, role) / "plan.json")
            if plan and plan.get("vm_uuid") == vm_uuid:
                return role
        return None

    async def _set_state(self, role: str, state: str) -> None:
        plan = read_json(role_dir(self.labs, role) / "plan.json") or {}
        await self._write_plan(role, {**plan, "state": state})

    async def _write_plan(self, role: str, plan: dict[str, object]) -> None:
        directory = role_dir(self.labs, role)
        previous = read_json(directory / "plan.json") or {}
        generation = int(previous.get("generation", 0)) + 1
        write_json(directory / "plan.json", {**plan, "generation": generation}, private=True)
        log.info("lab-in-a-box: %s is now %s (%s), generation %d", role, plan.get("name"), plan.get("state"),
                 generation)

        def applied() -> bool:
            ack = read_json(directory / "applied.json")
            return bool(ack) and ack.get("generation") == generation  # type: ignore[union-attr]

        await self._wait(applied, f"the {role} container to apply {plan.get('name')} ({plan.get('state')})")
        error = (read_json(directory / "applied.json") or {}).get("error")
        if error:
            raise RuntimeError(f"the {role} container could not become {plan.get('name')} "
                               f"({plan.get('state')}): {error}")

    async def _wait(self, done: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                # Files written by another container: there is no local event to wait on.
                while not done():  # noqa: ASYNC110
                    await asyncio.sleep(self.poll)
        except TimeoutError:
            raise RuntimeError(f"timed out after {self.timeout:.0f}s waiting for {what}; is the container running "
                               "(`docker compose --profile sandbox ps`)?") from None
