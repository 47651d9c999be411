"""Who may do what, over real signed HTTP into the real app: forged, stale and replayed requests do nothing;
non-owners cannot destroy, extend, retry or read access details of someone's lab (by command or by button),
admins can; the refusal is private and the lab is untouched."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, select

from bot.blocks.ids import CreateField, CreateModalMeta, ExtendChoice, LabAction, LabRef, encode
from services.crypto import SecretBox
from services.labs import repository as repo
from services.labs.models import Lab, LabEvent, LabState
from tests.slack import payloads
from tests.slack.harness import Harness, running_bot
from tests.slack.world import SIGNING_SECRET, Sessions

ROOT_PASSWORD = "root-pw-Xq8s1Lm2Vt"


def said(body: dict[str, Any]) -> str:
    return json.dumps(body.get("blocks", []), ensure_ascii=False) + str(body.get("text", ""))


async def seed(h: Harness, sessions: Sessions) -> tuple[int, int]:
    """Alice's ready lab ``demo`` (with stored credentials) and her failed lab ``broken``."""
    await h.command("create demo --ttl 2h")
    await h.command("create broken --ttl 2h")
    await h.settle()
    box = SecretBox(h.world.settings.secret_key)
    h.world.service.box = box  # the scripted world's service reads credentials like the real one
    async with sessions() as session, session.begin():
        demo = await repo.get_latest_by_name(session=session, name="demo")
        demo.host_password_enc = box.encrypt(SecretStr(ROOT_PASSWORD))
        broken = await repo.get_latest_by_name(session=session, name="broken")
        broken.state, broken.failed_step, broken.error = LabState.FAILED, "iscsi_target", "scripted"
        await repo.save(session=session)
        return demo.id, broken.id


async def fingerprint(sessions: Sessions) -> tuple[Any, ...]:
    """The labs' states, expiries and versions, and how many audit events exist."""
    async with sessions() as session:
        labs = (await session.execute(select(Lab.name, Lab.state, Lab.expires_at, Lab.version).order_by(Lab.id))).all()
        events = (await session.execute(select(func.count()).select_from(LabEvent))).scalar_one()
    return tuple(labs), events


async def test_forged_stale_and_replayed_requests_do_nothing(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1) as h:
        demo_id, _ = await seed(h, sessions)
        before, calls = await fingerprint(sessions), len(h.fake.calls)
        ref = encode(LabRef(lab_id=demo_id, name="demo"))
        meta = encode(CreateModalMeta(channel_id="C_LABS"))
        bodies = [
            (payloads.slash_command("destroy demo --yes", response_url=h.fake.hook_url("x")), payloads.FORM),
            (payloads.slash_command("create forged --ttl 1h", response_url=h.fake.hook_url("x")), payloads.FORM),
            (payloads.block_action(LabAction.DESTROY, value=ref), payloads.FORM),
            (payloads.view_submission({CreateField.NAME: {CreateField.NAME: {"type": "plain_text_input",
                                                                             "value": "forged"}}},
                                      private_metadata=meta), payloads.FORM),
            (payloads.app_home_opened("U_ALICE"), payloads.JSON),
        ]
        now = int(time.time())
        for body, content_type in bodies:
            attempts = {
                "wrong secret": payloads.sign(body, content_type=content_type, secret="not-the-signing-secret"),
                "stale (6 min)": payloads.sign(body, content_type=content_type, timestamp=now - 360),
                "from the future (6 min)": payloads.sign(body, content_type=content_type, timestamp=now + 360),
                "no signature": {"content-type": content_type, "x-slack-request-timestamp": str(now)},
                "no timestamp": {k: v for k, v in payloads.sign(body, content_type=content_type).items()
                                 if k != "x-slack-request-timestamp"},
                "replayed onto another body": payloads.sign("token=x&text=help", content_type=content_type),
                "garbage signature": dict(payloads.sign(body, content_type=content_type),
                                          **{"x-slack-signature": "v0=" + "0" * 64}),
            }
            for what, headers in attempts.items():
                response = await h.http.post("/slack/events", content=body, headers=headers)
                assert response.status_code == 401, (what, body[:60], response.status_code)
                assert SIGNING_SECRET not in response.text
        await h.settle()
        assert await fingerprint(sessions) == before
        assert len(h.fake.calls) == calls and not h.fake.hook_bodies("x")
        # The same bodies, properly signed, are acted on (the test above refused them for their signatures).
        assert (await h.send(bodies[0][0], payloads.FORM)).status_code == 200
        await h.settle()
        assert (await h.world.service.status("demo")).state == "destroyed"


async def test_only_owners_and_admins_act_on_a_lab(sessions: Sessions) -> None:
    async with running_bot(sessions, progress_events=1) as h:
        demo_id, broken_id = await seed(h, sessions)
        demo_ref = encode(LabRef(lab_id=demo_id, name="demo"))
        broken_ref = encode(LabRef(lab_id=broken_id, name="broken"))
        extend = encode(ExtendChoice(lab_id=demo_id, name="demo", duration="1h"))
        before = await fingerprint(sessions)

        bob_commands = ["destroy demo --yes", "extend demo 1h", "retry broken", "access demo", "destroy broken --yes"]
        for index, text in enumerate(bob_commands):
            await h.command(text, user="U_BOB", hook=f"bob-cmd-{index}")
        bob_clicks: list[tuple[LabAction, dict[str, Any]]] = [
            (LabAction.DESTROY, {"value": demo_ref}), (LabAction.EXTEND, {"selected": extend}),
            (LabAction.RETRY, {"value": broken_ref}), (LabAction.ACCESS, {"value": demo_ref}),
            (LabAction.DESTROY, {"value": broken_ref})]
        for index, (action, value) in enumerate(bob_clicks):
            await h.send(payloads.block_action(action, user="U_BOB", response_url=h.fake.hook_url(f"bob-click-{index}"),
                                               **value), payloads.FORM)
        await h.settle()
        for hook in [f"bob-cmd-{i}" for i in range(5)] + [f"bob-click-{i}" for i in range(5)]:
            answers = h.fake.hook_bodies(hook)
            assert answers, f"Bob got no answer on {hook}"
            text = " ".join(said(a) for a in answers)
            assert "only <@U_ALICE>" in text, (hook, text[:300])
            assert all(a.get("response_type", "ephemeral") == "ephemeral" for a in answers)
            assert ROOT_PASSWORD not in text
        assert await fingerprint(sessions) == before, "Bob changed a lab he does not own"
        assert h.world.jobs.destroys == []
        everything_sent = b" ".join(body for _, _, body in h.fake.raw)
        assert ROOT_PASSWORD.encode() not in everything_sent

        # An admin may do all of it.
        await h.command("access demo", user="U_ADMIN", hook="admin-access")
        await h.command("extend demo 1h", user="U_ADMIN", hook="admin-extend")
        await h.command("retry broken", user="U_ADMIN", hook="admin-retry")
        await h.settle()
        assert ROOT_PASSWORD in " ".join(said(a) for a in h.fake.hook_bodies("admin-access"))
        assert all(a.get("response_type", "ephemeral") == "ephemeral" for a in h.fake.hook_bodies("admin-access"))
        assert (await h.world.service.status("demo")).ttl_extensions == 1
        assert (await h.world.service.status("broken")).state == "ready"  # retried and rebuilt by the engine
        await h.send(payloads.block_action(LabAction.DESTROY, value=demo_ref, user="U_ADMIN"), payloads.FORM)
        await h.settle()
        assert (await h.world.service.status("demo")).state == "destroyed"
        assert h.world.jobs.destroys == [demo_id]
        # The root password went only to the admin who asked, privately; never into the channel.
        assert not [m for m in h.fake.messages.values() if ROOT_PASSWORD in m.text + json.dumps(m.blocks)]


async def test_malformed_bodies_are_checked_for_a_signature_first(sessions: Sessions) -> None:
    """labbot refuses signed but malformed bodies itself (Bolt would crash on them); unsigned ones still get the
    401 and learn nothing about their shape."""
    async with running_bot(sessions) as h:
        now = int(time.time())
        for body, content_type in [('{"type": "event_callback", "event": null}', payloads.JSON),
                                   ("payload=null", payloads.FORM), ("{", payloads.FORM)]:
            for headers in (payloads.sign(body, content_type=content_type, secret="forged-secret-123"),
                            payloads.sign(body, content_type=content_type, timestamp=now - 301),
                            {"content-type": content_type}):
                response = await h.http.post("/slack/events", content=body, headers=headers)
                assert response.status_code == 401 and "malformed" not in response.text
            signed = await h.send(body, content_type)
            assert signed.status_code == 400 and "malformed" in signed.text
        assert [c.method for c in h.fake.calls] == ["auth.test"] or h.fake.calls == []
