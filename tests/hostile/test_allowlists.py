"""Who may create labs, and where: LABBOT_ALLOWED_CHANNELS covers DMs and the App Home's create form;
LABBOT_ALLOWED_USERS names people and Slack user groups (resolved with usergroups.users.list, cached)."""

from __future__ import annotations

import json
from typing import Any

from bot.blocks.ids import CreateField, CreateModalMeta, LabAction, encode
from tests.slack import payloads
from tests.slack.harness import running_bot
from tests.slack.world import Sessions


def said(body: dict[str, Any]) -> str:
    return json.dumps(body.get("blocks", []), ensure_ascii=False) + str(body.get("text", ""))


def form(name: str) -> dict[str, Any]:
    return {
        CreateField.NAME: {CreateField.NAME: {"type": "plain_text_input", "value": name}},
        CreateField.PROFILE: {CreateField.PROFILE: {"type": "static_select", "selected_option": {"value": "sandbox"}}},
        CreateField.TTL: {CreateField.TTL: {"type": "static_select", "selected_option": {"value": "4h"}}},
    }


async def names(h: Any) -> set[str]:
    labs = await h.world.service.list_labs(h.bot.deps.actor("U_ADMIN"), everything=True)
    return {lab.name for lab in labs}


async def test_the_channel_allowlist_covers_dms_and_the_app_home(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1, overrides={"allowed_channels": ["C_LABS"]}) as h:
        dm = await h.command("create from-dm", channel="D0ALICE")
        assert "does not work in this conversation" in said(dm.json())
        home_form = await h.send(payloads.view_submission(
            form("from-home"), private_metadata=encode(CreateModalMeta(channel_id=None))), payloads.FORM)
        assert home_form.status_code == 200
        await h.send(payloads.block_action(LabAction.OPEN_CREATE, value="new", container={
            "type": "view", "view_id": "V_HOME"}), payloads.FORM)
        await h.command("create from-channel", channel="C_LABS")
        await h.settle()
        assert await names(h) == {"from-channel"}
        assert not h.fake.calls_to("views.open"), "the App Home's New lab button opened the form"
        dms = [said({"blocks": m.blocks, "text": m.text}) for m in h.fake.messages.values()]
        assert sum("labs are created in <#C_LABS>" in text for text in dms) == 2


async def test_only_allowed_people_and_groups_create_labs(sessions: Sessions) -> None:
    overrides = {"allowed_users": ["U_ALICE", "S_TRAINERS"], "max_labs_per_user": 5}
    async with running_bot(sessions, progress_events=1, overrides=overrides) as h:
        h.fake.usergroups["S_TRAINERS"] = ["U_CAROL", "U_DAVE"]
        await h.command("create by-bob", user="U_BOB", hook="bob")
        for i in range(3):
            await h.command(f"create by-carol-{i}", user="U_CAROL")
        await h.command("create by-alice")
        await h.command("create by-admin", user="U_ADMIN")
        await h.settle()
        assert "you may not create labs here" in said(h.fake.hook_bodies("bob")[0])
        assert await names(h) == {"by-carol-0", "by-carol-1", "by-carol-2", "by-alice", "by-admin"}
        # Bob may still look at labs, and the group was looked up once for three creates (cached).
        assert len(h.fake.calls_to("usergroups.users.list")) == 1
        assert h.fake.calls_to("usergroups.users.list")[0].args["usergroup"] == "S_TRAINERS"
