"""Isolation between labs in the lab-in-a-box: each lab has its own network, and one lab's VMs cannot reach
another's, not even as root on VM1 with an address on the other lab's subnet; each nested ZStack has its own
admin password; destroy removes each network.

Lab A uses the shipped ``sandbox`` profile, lab B a copy whose lab network has another range, so that "B's VM2"
is an address A could only reach across the labs (with equal ranges A would just reach its own VM2).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sandbox import system
from services.crypto import SecretBox
from services.labs.models import Lab, LabState
from services.zstack.client import ZStackClient
from services.zstack.errors import ZStackAuthError
from tests.conftest import on_database
from tests.engine.sandbox_lab import OWNER, World, box_fixture, lab_world
from tests.sandbox.labbox import python_on

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

box = box_fixture("iso")

PROFILES = Path(__file__).resolve().parents[2] / "config" / "profiles"
CONNECT = """
import json, socket
try:
    socket.create_connection(({ip!r}, 22), timeout=3).close()
    print(json.dumps("connected"))
except OSError as err:
    print(json.dumps(type(err).__name__))
"""


DISCOVER = """
import asyncio, json
from sandbox.discovery import discover, local_initiator_name
try:
    found = asyncio.run(discover({ip!r}, 3260, initiator=local_initiator_name(), chap={chap!r}))
    print(json.dumps([[t.iqn, [[lun.lun_id, lun.wwid] for lun in t.luns]] for t in found]))
except Exception as err:
    print(json.dumps(type(err).__name__))
"""


def _profiles(tmp_path: Path) -> Path:
    directory = tmp_path / "profiles"
    directory.mkdir()
    shutil.copy(PROFILES / "sandbox.yaml", directory / "sandbox.yaml")
    other = (PROFILES / "sandbox.yaml").read_text().replace("name: sandbox", "name: sandbox-b")
    (directory / "sandbox-b.yaml").write_text(other.replace("cidr: 198.19.8.0/24", "cidr: 198.19.9.0/24"))
    return directory


async def _reach(world: World, source: Lab, ip: str, *, as_neighbour: bool = False) -> str:
    """What a TCP connect from ``source``'s VM1 to ``ip``:22 gives; ``as_neighbour`` first puts an address of
    ``ip``'s /24 on VM1's lab NIC, as a student with root could."""
    async with world.lab_ssh(source) as ssh:
        if as_neighbour:
            shown = await ssh.run("vm1", "ip -o -4 addr show", timeout=60, check=True)
            nic = next(line.split()[1] for line in shown.stdout.splitlines() if f" {source.vm1_vpc_ip}/" in line)
            spare = ip.rsplit(".", 1)[0] + ".250/24"
            await ssh.run("vm1", f"ip addr replace {spare} dev {nic}", timeout=60, check=True)
        return str(await python_on(ssh, "vm1", CONNECT.format(ip=ip)))


@on_database("postgres")
async def test_labs_cannot_reach_each_other_and_each_network_goes_with_its_lab(box, database_url: str,
                                                                              tmp_path: Path):
    async with lab_world(box, database_url, tmp_path, profiles_dir=_profiles(tmp_path)) as world:
        a = await world.service.create(OWNER, name="iso-a")
        b = await world.service.create(OWNER, name="iso-b", profile="sandbox-b")
        for view in (a, b):
            await world.runtime.engine.wait_idle(view.id, timeout=150)
        lab_a, lab_b = await world.lab_row("iso-a"), await world.lab_row("iso-b")
        for lab in (lab_a, lab_b):
            assert lab.state == LabState.READY, (lab.name, lab.failed_step, lab.error)
        assert lab_a.vm2_ip and lab_b.vm2_ip and lab_a.vm2_ip.startswith("198.19.8.")
        assert lab_b.vm2_ip.startswith("198.19.9.")

        # Each lab's VM2 sits on its own L3 network, on its own VXLAN L2, both tagged with the lab.
        nets = {}
        for lab in (lab_a, lab_b):
            tag = f"labbot::lab::{lab.uuid}"
            l3s = [n for n in world.sim.state.list("l3") if tag in world.sim.state.tags_of(n["uuid"], "User")]
            l2s = [n for n in world.sim.state.list("l2") if tag in world.sim.state.tags_of(n["uuid"], "User")]
            assert len(l3s) == 1 and [n["type"] for n in l2s] == ["VxlanNetwork"]
            assert l3s[0]["l2NetworkUuid"] == l2s[0]["uuid"]
            nets[lab.name] = l3s[0]["uuid"]
            assert {n["l3NetworkUuid"] for n in world.sim.state.list("nic", vmInstanceUuid=lab.vm2_uuid)} == {
                l3s[0]["uuid"]}
        assert nets["iso-a"] != nets["iso-b"]

        # Each lab works (its VM1 reaches its VM2); neither reaches the other's VM2, even as a neighbour.
        assert await _reach(world, lab_a, lab_a.vm2_ip) == "connected"
        assert await _reach(world, lab_b, lab_b.vm2_ip) == "connected"
        assert await _reach(world, lab_a, lab_b.vm2_ip) != "connected"
        assert await _reach(world, lab_b, lab_a.vm2_ip) != "connected"
        assert await _reach(world, lab_a, lab_b.vm2_ip, as_neighbour=True) != "connected"
        assert await _reach(world, lab_b, lab_a.vm2_ip, as_neighbour=True) != "connected"

        # Each nested ZStack has its lab's own admin password (kept encrypted), which `/lab access` hands out;
        # ZStack's default, the same everywhere, is refused.
        secret_box = SecretBox(world.settings.secret_key)
        passwords = {}
        for lab in (lab_a, lab_b):
            mine = secret_box.decrypt(lab.nested_password_enc or "").get_secret_value()
            assert mine not in (lab.nested_password_enc, world.settings.nested_admin_password.get_secret_value())
            access = await world.service.access(OWNER, lab.name)
            assert access.zstack_password == mine and f"ZStack UI login: admin / {mine}" in access.lines(reveal=True)
            passwords[lab.name] = mine
            async with world.nested(lab) as nested:
                assert [z["uuid"] for z in await nested.query("QueryZone")] == [lab.nested_ids["zone"]]
        assert passwords["iso-a"] != passwords["iso-b"]
        async with world.lab_ssh(lab_a) as ssh:
            port = await ssh.forward_local("vm2", 8080)
            async with ZStackClient(f"http://127.0.0.1:{port}/zstack/v1", "admin",
                                    world.settings.nested_admin_password) as default:
                with pytest.raises(ZStackAuthError):
                    await default.login()

        # CHAP: VM1's target admits A's VM2 only with A's CHAP secret (which the nested iSCSI server was given);
        # without it, or with B's, the login is refused.
        chap_a = secret_box.decrypt(lab_a.chap_secret_enc or "").get_secret_value()
        chap_b = secret_box.decrypt(lab_b.chap_secret_enc or "").get_secret_value()
        assert chap_a != chap_b and len(chap_a) == 16
        async with world.lab_ssh(lab_a) as ssh:
            user = f"labbot-{lab_a.uuid[:16]}"
            results = {label: await python_on(ssh, "vm2", DISCOVER.format(ip=lab_a.vm1_vpc_ip, chap=chap))
                       for label, chap in (("none", None), ("other", (user, chap_b)), ("own", (user, chap_a)))}
        assert results["own"] == [[lab_a.iscsi_iqn, [[1, lab_a.iscsi_wwid]]]], results
        assert results["none"] == results["other"] == "SandboxError", results  # the login was refused
        async with world.nested(lab_a) as nested:
            servers = await nested.query("QueryIscsiServer")
            assert [s["chapUserName"] for s in servers] == [user]
            assert "chapUserPassword" not in servers[0]

        # Destroy: each lab's network is gone from the platform and its segment from the machine.
        for lab in (lab_a, lab_b):
            await world.service.destroy(OWNER, lab.name)
            await world.runtime.engine.wait_idle(lab.id, timeout=90)
            assert (await world.lab_row(lab.name)).state == LabState.DESTROYED
        assert world.sim.state.get("l3", nets["iso-a"]) is None and world.sim.state.get("l3", nets["iso-b"]) is None
        assert [n for n in world.sim.state.list("l2") if n["type"] == "VxlanNetwork"] == []
        namespaces = await system.list_netns()
        assert not {box.config.segment_netns(u) for u in nets.values()} & set(namespaces)
