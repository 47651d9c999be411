"""The real app behind real HTTP: signed commands, clicks, submissions and events; signatures; retries."""

from __future__ import annotations

import json
import logging
import time

import pytest
from sqlalchemy import text

from bot.blocks.ids import CreateField, CreateModalMeta, ExtendChoice, LabAction, LabRef, encode
from tests.slack import payloads
from tests.slack.harness import running_bot
from tests.slack.world import BOT_TOKEN, SIGNING_SECRET, Sessions, settings


def blocks_text(body: dict) -> str:
    return json.dumps(body.get("blocks", []), ensure_ascii=False) + body.get("text", "")


async def test_signatures_health_and_metrics(sessions: Sessions) -> None:
    async with running_bot(sessions) as h:
        body = payloads.slash_command("help", response_url=h.fake.hook_url())
        forged = await h.http.post("/slack/events", content=body, headers=payloads.sign(
            body, content_type=payloads.FORM, secret="another-secret-entirely"))
        assert forged.status_code == 401
        stale = await h.send(body, payloads.FORM, timestamp=int(time.time()) - 6 * 60)
        assert stale.status_code == 401
        health = await h.http.get("/healthz")
        assert health.status_code == 200
        assert health.json()["database"] == "ok" and health.json()["scheduler"]["configured"] is False

        class StoppedScheduler:
            async def start(self) -> None: ...

            async def stop(self) -> None: ...

            def status(self) -> dict:
                return {"running": False, "jobs": 3}

        h.bot.scheduler = StoppedScheduler()
        health = await h.http.get("/healthz")
        assert health.status_code == 503 and health.json()["scheduler"] == {"running": False, "jobs": 3}
        ok = await h.command("help")
        assert ok.status_code == 200
        metrics = (await h.http.get("/metrics")).text
        assert 'labbot_commands_total{command="command:help",outcome="ok"} 1.0' in metrics
        assert 'labbot_labs{state="ready"} 0.0' in metrics
        assert "labbot_slack_ack_seconds" in metrics
        assert BOT_TOKEN not in metrics and SIGNING_SECRET not in metrics
        # Bolt's one-time auth.test and one users.info (the person's language, for the accepted request) is all
        # that reached Slack: rejected requests reach nothing.
        assert [c.method for c in h.fake.calls] == ["auth.test", "users.info"]


async def test_help_and_errors_are_in_the_private_ack(sessions: Sessions) -> None:
    async with running_bot(sessions) as h:
        started = time.monotonic()
        help_ = await h.command("")
        assert time.monotonic() - started < 1.0
        assert help_.json()["response_type"] == "ephemeral" and "/lab create" in blocks_text(help_.json())
        wrong = await h.command("extend demo forever")
        assert wrong.json()["response_type"] == "ephemeral"
        assert "not a duration" in blocks_text(wrong.json()) and "Usage" in blocks_text(wrong.json())


async def test_create_over_http_posts_one_card_and_retries_change_nothing(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=3) as h:
        first = await h.command("create demo --ttl 2h", trigger_id="42.111.abc")
        assert first.status_code == 200 and first.text == ""
        retried = await h.command("create demo --ttl 2h", trigger_id="42.111.abc", retry=1)
        assert retried.status_code == 200
        await h.settle()
        labs = await h.world.service.list_labs(h.bot.deps.actor("U_ALICE"))
        assert [lab.name for lab in labs] == ["demo"] and labs[0].state == "ready"
        assert len(h.fake.top_level("C_LABS")) == 1
        assert "Creating lab `demo`" in blocks_text(h.fake.hook_bodies("cmd")[0])
        assert len(h.fake.hook_bodies("cmd")) == 1
        # A nameless create gets a name from the delivery, so a duplicate on another replica cannot build twice.
        await h.command("create", trigger_id="43.111.abc")
        await h.command("create --ttl 1h", trigger_id="44.111.abc")
        await h.command("create --ttl 1h", trigger_id="44.111.abc")  # duplicate delivery, no retry header
        await h.settle()
        assert len(await h.world.service.list_labs(h.bot.deps.actor("U_ALICE"))) == 2
        assert h.fake.calls_to("views.open")  # `/lab create` alone opens the form


async def test_modal_submission_validates_then_creates_in_the_channel(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1) as h:
        meta = encode(CreateModalMeta(channel_id="C_LABS"))

        def values(name: str, ttl: str) -> dict:
            return {
                CreateField.NAME: {CreateField.NAME: {"type": "plain_text_input", "value": name}},
                CreateField.PROFILE: {CreateField.PROFILE: {"type": "static_select",
                                                            "selected_option": {"value": "sandbox"}}},
                CreateField.TTL: {CreateField.TTL: {"type": "static_select", "selected_option": {"value": ttl}}},
            }

        bad = await h.send(payloads.view_submission(values("Not OK", "3d"), private_metadata=meta), payloads.FORM)
        assert bad.json()["response_action"] == "errors"
        assert set(bad.json()["errors"]) == {CreateField.NAME, CreateField.TTL}
        good = await h.send(payloads.view_submission(values("from-form", "4h"), private_metadata=meta),
                            payloads.FORM)
        assert good.status_code == 200 and good.text == ""
        await h.settle()
        lab = await h.world.service.status("from-form")
        assert lab.channel == "C_LABS" and lab.state == "ready"
        assert (lab.expires_at - lab.created_at).total_seconds() == pytest.approx(4 * 3600, abs=5)


async def test_card_buttons_permissions_and_a_repeated_destroy(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1) as h:
        await h.command("create demo")
        await h.settle()
        lab = await h.world.service.status("demo")
        card_ts = lab.progress_ref.split(":")[1]
        ref = encode(LabRef(lab_id=lab.id, name="demo"))
        # Bob may not destroy Alice's lab: he is told so, privately, and nothing changes.
        await h.send(payloads.block_action(LabAction.DESTROY, value=ref, user="U_BOB", message_ts=card_ts,
                                           response_url=h.fake.hook_url("bob")), payloads.FORM)
        await h.settle()
        assert "only <@U_ALICE>" in blocks_text(h.fake.hook_bodies("bob")[0])
        assert h.fake.hook_bodies("bob")[0]["response_type"] == "ephemeral"
        # Alice extends by 1h from the menu.
        await h.send(payloads.block_action(LabAction.EXTEND, selected=encode(ExtendChoice(
            lab_id=lab.id, name="demo", duration="1h")), message_ts=card_ts), payloads.FORM)
        await h.settle()
        assert (await h.world.service.status("demo")).ttl_extensions == 1
        # Alice destroys; Slack delivers the click twice.
        click = payloads.block_action(LabAction.DESTROY, value=ref, message_ts=card_ts, trigger_id="9.9.9")
        for retry in (None, 1):
            assert (await h.send(click, payloads.FORM, retry=retry)).status_code == 200
        await h.settle()
        assert (await h.world.service.status("demo")).state == "destroyed"
        assert h.world.jobs.destroys == [lab.id]
        audit = [blocks_text({"blocks": m.blocks}) for m in h.fake.thread("C_LABS", card_ts)]
        assert sum("asked to destroy" in t for t in audit) == 1
        card = h.fake.messages[("C_LABS", card_ts)]
        assert "Destroy requested by <@U_ALICE>" in blocks_text({"blocks": card.blocks})
        assert not [b for b in card.blocks if b["type"] == "actions"]
        # An old card's button cannot touch a new lab that took the same name.
        await h.command("create demo")
        await h.settle()
        await h.send(payloads.block_action(LabAction.DESTROY, value=ref, response_url=h.fake.hook_url("old")),
                     payloads.FORM)
        await h.settle()
        assert "earlier lab called `demo`" in blocks_text(h.fake.hook_bodies("old")[0])
        assert (await h.world.service.status("demo")).state == "ready"


async def test_app_home_published_once_per_event(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1) as h:
        await h.command("create mine")
        await h.settle()
        event = payloads.app_home_opened("U_ALICE", event_id="Ev0001")
        assert (await h.send(event, payloads.JSON)).status_code == 200
        assert (await h.send(event, payloads.JSON, retry=1)).status_code == 200
        await h.settle()
        assert len(h.fake.calls_to("views.publish")) == 1
        home = json.dumps(h.fake.home["U_ALICE"]["blocks"])
        assert "mine" in home and "Every lab" not in home
        await h.send(payloads.app_home_opened("U_ADMIN"), payloads.JSON)
        await h.settle()
        assert "Every lab" in json.dumps(h.fake.home["U_ADMIN"]["blocks"])


async def test_channels_and_unknown_errors(sessions: Sessions, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running_bot(sessions, settings_=None) as h:
        h.bot.settings.allowed_channels = ["C_LABS"]
        refused = await h.command("list", channel="C_RANDOM")
        assert "does not work in this conversation" in blocks_text(refused.json())
        async with h.world.service.sessions() as session, session.begin():
            await session.execute(text("DROP TABLE lab_events"))
        await h.command("create broken", hook="broken")
        await h.settle()
        shown = blocks_text(h.fake.hook_bodies("broken")[0])
        error_id = shown.split("error id `")[1].split("`")[0]
        assert error_id.startswith("E-")
        assert f"error {error_id} in command:create" in caplog.text and "Traceback" not in shown
        metrics = (await h.http.get("/metrics")).text
        assert 'labbot_commands_total{command="command:create",outcome="error"} 1.0' in metrics


def test_settings_for_http_mode_need_the_signing_secret() -> None:
    from bot.app import SlackBot
    from config.errors import ConfigError

    cfg = settings(slack_signing_secret=None, slack_app_token="xapp-fake-0000000000")
    cfg.slack_app_token = None
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        SlackBot(cfg, domain=None)  # type: ignore[arg-type]
