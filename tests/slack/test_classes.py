"""Trainers and students in Slack: `/lab class …`, `/lab check`, `/lab solve` over signed HTTP, fake Slack.

The class overview is one message in the trainer's DM with labbot, edited in place as the class's labs change;
students get their access details in their own DM when their lab is ready; refusals are private and change
nothing.
"""

from __future__ import annotations

import asyncio
import json

from config.profiles import PoolSpec
from services.labs.service import Actor
from services.labs.tasks import TaskResult
from tests.slack import payloads
from tests.slack.harness import Harness, running_bot
from tests.slack.world import Sessions

ADMIN = Actor("U_ADMIN", is_admin=True)


def text_of(blocks: list[dict]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def hook_texts(h: Harness, hook: str) -> list[str]:
    return [text_of(body.get("blocks", [])) + body.get("text", "") for body in h.fake.hook_bodies(hook)]


async def test_class_created_watched_claimed_and_destroyed_from_slack(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1) as h:
        response = await h.command("class create c1 --count 3 --for <@U_STU1|stu1> --ttl 2h", user="U_ADMIN",
                                   hook="create")
        assert response.status_code == 200
        await h.settle()
        labs = {lab.name: lab for lab in await h.world.service.list_labs(ADMIN,
                                                                          everything=True)}
        assert sorted(labs) == ["c1-01", "c1-02", "c1-03"]
        assert all(lab.state == "ready" for lab in labs.values())
        assert labs["c1-01"].owner == "U_STU1" and not labs["c1-01"].claimable
        assert labs["c1-02"].claimable and labs["c1-02"].owner == "U_ADMIN"

        # The trainer's overview: one DM message, edited until every lab shows ready.
        # (The trainer also owns the two unclaimed labs, so their ready notes reach the same DM.)
        board = [m for m in h.fake.top_level("D_ADMIN") if "Class `c1`" in text_of(m.blocks)]
        assert len(board) == 1
        await h.fake.wait_until(lambda: text_of(board[0].blocks).count("Ready") >= 3, timeout=10)
        assert "c1-03" in text_of(board[0].blocks) and len(board[0].versions) >= 2
        assert any("overview is in your DM" in t for t in hook_texts(h, "create"))
        # The named student got the access details privately, in their own DM.
        assert any("How to reach lab `c1-01`" in text_of(m.blocks) for m in h.fake.top_level("D_STU1"))

        # A student claims one of the unassigned labs; a second claim by the same student is refused.
        await h.command("class claim c1", user="U_STU2", hook="claim")
        await h.settle()
        claimed = await h.world.service.status("c1-02")
        assert claimed.owner == "U_STU2" and not claimed.claimable
        assert any("How to reach lab `c1-02`" in text_of(m.blocks) for m in h.fake.top_level("D_STU2"))
        await h.command("class claim c1", user="U_STU2", hook="again")
        await h.settle()
        assert any("you already have lab `c1-02`" in t for t in hook_texts(h, "again"))

        # Students may not end the class; the trainer may, after confirming.
        await h.command("class destroy c1 --yes", user="U_STU2", hook="nope")
        await h.settle()
        assert any("only the trainer" in t for t in hook_texts(h, "nope"))
        assert (await h.world.service.status("c1-01")).state == "ready"
        await h.command("class destroy c1", user="U_ADMIN", hook="confirm")
        await h.settle()
        assert any("--yes" in t for t in hook_texts(h, "confirm"))
        assert (await h.world.service.status("c1-01")).state == "ready"
        await h.command("class destroy c1 --yes", user="U_ADMIN", hook="destroy")
        await h.settle()
        assert {(await h.world.service.status(n)).state for n in labs} == {"destroyed"}
        await h.fake.wait_until(lambda: "ended" in text_of(board[0].blocks), timeout=10)
        assert h.fake.violations == 0  # every Retry-After was honoured (three cards at once may meet a 429)


async def test_class_refusals_change_nothing(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1, overrides={"max_labs_per_class": 4}) as h:
        await h.command("class create c2 --count 2", user="U_ALICE", hook="student")
        await h.command("class create c2 --count 5", user="U_ADMIN", hook="big")
        bad = await h.command("class create c2 --for bob", user="U_ADMIN", hook="bad")
        await h.settle()
        assert any("only trainers" in t for t in hook_texts(h, "student"))
        assert any("at most 4 labs" in t for t in hook_texts(h, "big"))
        assert "is not a Slack user" in bad.text  # a parse error is answered in the ack itself
        assert await h.world.service.list_labs(ADMIN, everything=True) == []


async def test_check_and_solve_from_slack(sessions: Sessions) -> None:
    verdicts = {"iscsi_target": True}

    async def checker(lab_id: int) -> list[TaskResult]:
        # The narrowest seam: the checks themselves run against real machines in tests/engine/test_exercise.py.
        steps = ("iscsi_target", "install_zstack", "nested_compute", "nested_storage", "nested_network_image",
                 "nested_vm")
        return [TaskResult(s, verdicts.get(s, False), "fine" if verdicts.get(s) else f"{s} is not there yet")
                for s in steps]

    async with running_bot(sessions, progress_events=1) as h:
        h.world.service.exercise_checker = checker
        await h.command("create ex1 --exercise", hook="create")
        await h.settle()
        await h.command("check ex1", user="U_BOB", hook="other")
        await h.command("check ex1", hook="check")
        await h.settle()
        assert any("only <@U_ALICE>" in t for t in hook_texts(h, "other"))
        report = hook_texts(h, "check")[-1]
        assert "3 of 8 steps done" in report and "install_zstack is not there yet" in report
        card = h.fake.top_level("C_LABS")[0]
        await h.fake.wait_until(lambda: "3 of 8 steps done" in text_of(card.blocks), timeout=10)

        await h.command("solve ex1 bogus_step", hook="bogus")
        await h.command("solve ex1 iscsi_target", hook="done-already")
        await h.settle()
        assert any("not a task of lab `ex1`" in t for t in hook_texts(h, "bogus"))
        assert any("already done" in t for t in hook_texts(h, "done-already"))
        await h.command("solve ex1 install_zstack", hook="solve")
        await h.settle()
        lab = await h.world.service.status("ex1")
        assert lab.state == "ready"
        events = await h.world.service.events("ex1")
        assert any("solve install_zstack asked by U_ALICE" in detail for _, _, _, detail in events)

        verdicts.update({s: True for s in ("install_zstack", "nested_compute", "nested_storage",
                                           "nested_network_image", "nested_vm")})
        await h.command("check ex1", hook="final")
        await h.settle()
        lab = await h.world.service.status("ex1")
        assert lab.exercise is not None and lab.exercise.completed_at is not None
        await h.fake.wait_until(lambda: "complete" in text_of(card.blocks), timeout=10)
        await asyncio.sleep(0)


async def test_warm_pool_in_slack(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1) as h:
        service = h.world.service
        service.profiles = {**service.profiles}
        service.profiles["sandbox"] = service.profiles["sandbox"].model_copy(update={"pool": PoolSpec(size=1)})
        service.pool.labs = service  # the pool reads the service's (now per-test) profiles
        await service.pool.refill()
        await h.settle()
        assert h.fake.top_level("C_LABS") == []  # a pool lab nobody has claimed has no card
        await h.command("pool status", user="U_ALICE", hook="denied")
        await h.command("pool status", user="U_ADMIN", hook="status")
        await h.settle()
        assert any("only admins" in t for t in hook_texts(h, "denied"))
        assert any("target 1" in t and "1 ready" in t for t in hook_texts(h, "status"))
        await h.send(payloads.app_home_opened("U_ADMIN"), payloads.JSON)
        await h.send(payloads.app_home_opened("U_ALICE"), payloads.JSON)
        await h.settle()
        assert "Warm pools" in text_of(h.fake.home["U_ADMIN"]["blocks"])
        assert "Warm pools" not in text_of(h.fake.home["U_ALICE"]["blocks"])
        await h.command("create fast", hook="create")
        await h.settle()
        assert any("came from the warm pool" in t for t in hook_texts(h, "create")), hook_texts(h, "create")
        cards = h.fake.top_level("C_LABS")
        assert len(cards) == 1 and "fast" in text_of(cards[0].blocks)
        lab = await service.status("fast")
        assert lab.state == "ready" and lab.owner == "U_ALICE" and not lab.pool
