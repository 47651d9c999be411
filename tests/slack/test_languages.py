"""Every Slack builder rendered in English and in Chinese: no text is left untranslated, the course's terms appear.

The catalogue test (tests/foundation/test_i18n.py) checks the catalogues against the code; this one renders the
messages people actually get, so a text built outside ``_()`` (an English sentence that never reaches the
catalogue) shows up as English words in the Chinese rendering.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.blocks.card import CardNote, build_lab_card
from bot.blocks.classroom import build_check_report, build_class_overview, build_confirm_class_destroy
from bot.blocks.home import build_home
from bot.blocks.ids import CreateModalMeta
from bot.blocks.lab_files import build_capture_share, build_capture_summary, build_picture_share, build_picture_text
from bot.blocks.modal import build_create_modal
from bot.blocks.notices import (
    build_expired,
    build_expiry_warning,
    build_health_changed,
    build_orphans_found,
    build_owner_failed,
    build_owner_ready,
    build_warning_retired,
)
from bot.blocks.replies import build_created, build_error, build_extended, build_reply
from bot.blocks.thread import build_audit_note, build_build_report, build_lab_error, build_step_failure
from config.profiles import load_profiles
from services import i18n
from services.capture.analysis import analyse_pcap
from services.capture.service import CaptureReport
from services.capture.spec import CaptureSpec
from services.db import PROJECT_ROOT
from services.dispatch import Reply, ReplyKind
from services.i18n import CHINESE, ENGLISH, use_language
from services.labs.access import AccessDetails
from services.labs.build.health import CheckResult, HealthReport
from services.labs.classes import ClassView
from services.labs.picture import Flow, LabPicture
from services.labs.pool import PoolStatus
from services.labs.views import ExerciseView, TaskView
from services.ssh.access import access_commands
from tests.capture import pcapgen as g
from tests.slack.factories import NOW, STEP_NAMES, in_state

STATES = ["requested", "provisioning", "ready", "expiring", "failed", "destroying", "destroyed"]
PROFILES = load_profiles(PROJECT_ROOT / "config" / "profiles")
# Three English words in a row outside code spans, mentions, date tokens and emoji codes: a sentence left in English.
_ENGLISH_RUN = re.compile(r"\b[A-Za-z]{2,}(?:[ ,]+[A-Za-z]{2,}){2,}\b")
_NOT_PROSE = re.compile(r"`[^`]*`|<[^>]*>|:[a-z_]+:|https?://\S+|\b(?:iqn|ssh|scp)\S*|\bZStack [A-Za-z]+\b")


def _picture() -> LabPicture:
    return LabPicture(
        lab="demo", state="ready", profile="sandbox", vm1_public_ip="198.18.0.10", vm1_vpc_ip="198.19.0.10",
        vm2_ip="198.19.0.11", ssh_port=22, iscsi_backend="targetcli", iscsi_port=3260,
        iscsi_iqn="iqn.2026-12.io.labbot:demo", iscsi_lun=0, iscsi_wwid="36001405abc", disk_gb=50, ui_port=5000,
        api_port=8080, zone="zone-1", cluster="cluster-1", host="demo-vm2", primary_storage="sblk-1",
        nested_vm="nested-vm-1",
        flows=(Flow("iscsi", "vm2", "vm1", 3260, "iSCSI"), Flow("ui", "vm1", "vm2", 5000, "UI")),
    )


def _capture(tmp_path: Path) -> CaptureReport:
    iscsi = (g.Conversation(g.VM2, g.VM1, 40000, 3260).open()
             .send(True, bytes(g.login_request())).send(False, bytes(g.login_response()))
             .send(True, bytes(g.scsi_command(g.INQUIRY))).send(False, bytes(g.data_in(512))))
    path = g.write(tmp_path / "demo-iscsi.pcap", iscsi)
    summary = analyse_pcap(path, vm1_ip=g.VM1, vm2_ip=g.VM2, iscsi_port=3260, ui_port=5000, api_port=8080)
    return CaptureReport(lab=in_state("ready"), spec=CaptureSpec(flows="iscsi", seconds=5, exercise_io=True),
                         path=path, size=path.stat().st_size, started_at=NOW, summary=summary,
                         exercised="discovery and a read burst", hit_byte_limit=True)


def _exercise_lab():
    tasks = (TaskView("iscsi_target", "Export VM1's disk over iSCSI", True, "ok"),
             TaskView("install_zstack", "Install ZStack on VM2", False, "not yet"))
    exercise = ExerciseView(start="iscsi_target", tasks=tasks, checked_at=NOW, completed_at=None, solving=None)
    return replace(in_state("ready"), exercise=exercise)


def render_everything(tmp_path: Path) -> list[tuple[str, object]]:
    """Every builder of bot/blocks, each with representative input, as (what, rendered JSON-able value)."""
    ready, failed = in_state("ready"), in_state("failed")
    out: list[tuple[str, object]] = []
    for state in STATES:
        lab = in_state(state)
        out.append((f"card {state}", build_lab_card(lab, now=NOW, note=CardNote("U_BOB", "Extended", NOW))))
        out.append((f"report {state}", build_build_report(lab)))
    out += [
        ("step failure", build_step_failure(failed, failed.steps[3])),
        ("lab error", build_lab_error(failed)),
        ("audit", build_audit_note(ready, actor="U_BOB", what="asked to destroy the lab", at=NOW)),
        ("health changed", build_health_changed(replace(ready, health="degraded",
                                                        health_failing=("iscsi_lun", "nested_api")), now=NOW)),
        ("health recovered", build_health_changed(replace(ready, health="ok"), now=NOW)),
        ("warning", build_expiry_warning(in_state("expiring"), now=NOW, max_expires_at=NOW + timedelta(days=1))),
        ("warning at limit", build_expiry_warning(in_state("expiring"), now=NOW, extendable=False)),
        ("warning failed", build_expiry_warning(failed, now=NOW)),
        ("retired extended", build_warning_retired(ready, outcome="extended", actor="U_BOB")),
        ("retired destroyed", build_warning_retired(ready, outcome="destroyed")),
        ("owner ready", build_owner_ready(ready, card_in="C_LABS")),
        ("owner failed", build_owner_failed(failed, card_in="C_LABS")),
        ("expired", build_expired(in_state("destroying"))),
        ("orphans", build_orphans_found("", {"labbot-x-vm1": "uuid-1"})),
        ("error", build_error("lab `demo` is gone")),
        ("internal error", build_error("KeyError", error_id="e-1")),
        ("created", build_created("demo", card_in="C_LABS")),
        ("extended", build_extended(ready)),
        ("modal", build_create_modal(profiles=PROFILES, default_profile="sandbox",
                                     meta=CreateModalMeta(channel_id="C1"))),
        ("home user", build_home(user_id="U_ALICE", my_labs=[ready], all_labs=None, now=NOW)),
        ("home admin", build_home(user_id="U_ALICE", my_labs=[], all_labs=[ready, failed], now=NOW,
                                  pools=[PoolStatus("sandbox", 2, 1, 1, 0)])),
        ("home empty", build_home(user_id="U_ALICE", my_labs=[], all_labs=[], now=NOW)),
        ("check report", build_check_report(_exercise_lab())),
        ("picture text", build_picture_text(_picture(), "dot is missing")),
    ]
    klass = ClassView(name="c1", trainer="U_T", profile="sandbox", exercise_start="iscsi_target", size=2,
                      created_at=NOW, destroyed_at=None, status_ref=None,
                      labs=(replace(ready, name="c1-01", class_id=1), replace(in_state("provisioning"),
                                                                               name="c1-02", claimable=True)))
    out += [("class", build_class_overview(klass, now=NOW)), ("class destroy", build_confirm_class_destroy(klass))]
    share = build_picture_share(_picture(), b"png")
    capture = _capture(tmp_path)
    capture_share = build_capture_share(capture, b"pcap")
    out += [("picture share", [share.title, share.comment, share.alt_txt]),
            ("capture summary", build_capture_summary(capture, actor="U_BOB")),
            ("capture share", [capture_share.title, capture_share.comment])]
    access = AccessDetails(lab=ready, commands=access_commands("198.18.0.10", 22, "198.19.0.11", "root"),
                           root_password="pw-1", zstack_user="admin", zstack_password="pw-2")
    report = HealthReport(lab=ready, checks=(CheckResult("ssh_vm1", True, 12), CheckResult("iscsi_lun", False, 9)))
    for reply in (
        Reply(ReplyKind.LABS, labs=(ready, failed)), Reply(ReplyKind.LABS, labs=()),
        Reply(ReplyKind.LABS, labs=(ready,), data={"all": True}),
        Reply(ReplyKind.LOGS, steps=failed.steps, data={"name": "demo"}), Reply(ReplyKind.LOGS, data={"name": "x"}),
        Reply(ReplyKind.CONFIRM_DESTROY, lab=ready), Reply(ReplyKind.ACCESS, lab=ready, data={"access": access}),
        Reply(ReplyKind.HEALTH, lab=ready, data={"report": report}), Reply(ReplyKind.LAB, lab=ready),
        Reply(ReplyKind.CHECKED, lab=_exercise_lab()), Reply(ReplyKind.CLASS, klass=klass),
        Reply(ReplyKind.CONFIRM_CLASS_DESTROY, klass=klass),
        Reply(ReplyKind.POOL, data={"pools": [PoolStatus("sandbox", 2, 1, 1, 0)]}),
    ):
        out.append((f"reply {reply.kind}", build_reply(reply, now=NOW)))
    return [(what, getattr(value, "blocks", value) if not isinstance(value, dict) else value)
            for what, value in out] + [(f"{what} text", value.text) for what, value in out if hasattr(value, "text")]


def _input_texts() -> list[str]:
    """Texts the tests hand in (step titles, errors, profile descriptions written by the operator): not labbot's."""
    texts = [title for _, title in STEP_NAMES]
    for state in STATES:
        lab = in_state(state)
        texts += [t for s in lab.steps for t in (s.error, s.progress, s.output_tail) if t]
        texts += [lab.error] if lab.error else []
    descriptions = [p.description for p in PROFILES.values() if p.description]
    texts += descriptions + [d[:60] for d in descriptions]  # option texts are clipped
    texts += ["lab `demo` is gone", "dot is missing", "asked to destroy the lab", "Export VM1's disk over iSCSI",
              "Install ZStack on VM2", "discovery and a read burst"]
    return sorted(set(texts), key=len, reverse=True)


def _prose(text: str) -> str:
    for given in _input_texts():
        text = text.replace(given, " ").replace(json.dumps(given, ensure_ascii=False)[1:-1], " ")
    return _NOT_PROSE.sub(" ", text)


def test_every_builder_renders_in_chinese_with_nothing_left_untranslated(tmp_path: Path) -> None:
    i18n.forget_missing()
    with use_language(CHINESE):
        rendered = render_everything(tmp_path)
    assert i18n.missing_translations() == []
    leftovers = []
    for what, value in rendered:
        text = json.dumps(value, ensure_ascii=False)
        # only the texts people read: Block Kit's "text" fields (not block types, ids or values)
        shown = " ".join(re.findall(r'"(?:text|title|comment|placeholder|alt_txt)": "((?:[^"\\]|\\.)*)"', text)) \
            if not isinstance(value, str | list) else (value if isinstance(value, str) else " ".join(map(str, value)))
        for run in _ENGLISH_RUN.findall(_prose(shown.replace("\\n", " "))):
            leftovers.append(f"{what}: {run!r}")
    assert not leftovers, "English left in the Chinese rendering:\n" + "\n".join(leftovers[:40])


def test_chinese_uses_the_courses_terms(tmp_path: Path) -> None:
    with use_language(CHINESE):
        everything = json.dumps(render_everything(tmp_path), ensure_ascii=False)
    for term in ("跳板机", "管理节点", "共享块存储", "嵌套云主机", "实验环境", "销毁", "续期", "讲师", "预热池"):
        assert term in everything, term


@pytest.mark.parametrize("language", [ENGLISH, CHINESE])
def test_buttons_keep_their_ids_and_values_in_every_language(language: str, tmp_path: Path) -> None:
    """Cards already posted keep working whatever language rendered them: only the words change."""

    def controls(blocks: list[dict]) -> list[tuple[str, str | None]]:
        return [(e["action_id"], e.get("value")) for b in blocks if b["type"] == "actions" for e in b["elements"]]

    with use_language(ENGLISH):
        english = [controls(build_lab_card(in_state(s), now=NOW).blocks) for s in STATES]
    with use_language(language):
        other = [controls(build_lab_card(in_state(s), now=NOW).blocks) for s in STATES]
    assert other == english and any(english)


async def test_each_person_is_answered_in_their_slack_language(sessions) -> None:
    from tests.slack.harness import running_bot

    def said(response) -> str:
        return json.dumps(response.json(), ensure_ascii=False)

    async with running_bot(sessions) as h:
        h.fake.user_locales.update({"U_LIN": "zh-CN", "U_ALICE": "en-US"})
        chinese = await h.command("extend demo forever", user="U_LIN")
        english = await h.command("extend demo forever", user="U_ALICE")
        assert "不是时长" in said(chinese) and "用法" in said(chinese) and "not a duration" not in said(chinese)
        assert "not a duration" in said(english) and "不是时长" not in said(english)
        help_zh = await h.command("help", user="U_LIN")
        assert "构建一个新的实验环境" in said(help_zh)
        await h.command("help", user="U_LIN")
        # one users.info per person, asked with include_locale, then cached
        asked = h.fake.calls_to("users.info")
        assert sorted(c.args["user"] for c in asked) == ["U_ALICE", "U_LIN"]
        assert all(str(c.args.get("include_locale")).lower() in {"1", "true"} for c in asked)

        # A Chinese user's create: their reply in Chinese, the channel card in LABBOT_LANGUAGE (English).
        await h.command("create lin-1", user="U_LIN", hook="lin")
        await h.settle()
        assert "正在创建实验环境" in json.dumps(h.fake.hook_bodies("lin"), ensure_ascii=False)
        cards = [m for m in h.fake.top_level("C_LABS") if "lin-1" in json.dumps(m.blocks)]
        assert cards and "实验环境" not in json.dumps(cards[0].blocks, ensure_ascii=False)


async def test_without_users_read_everyone_gets_the_default_language(sessions) -> None:
    from tests.slack.harness import running_bot

    scopes = frozenset({"commands", "chat:write", "chat:write.public", "channels:read", "groups:read", "im:read",
                        "mpim:read", "channels:history", "groups:history", "im:history", "mpim:history"})
    async with running_bot(sessions, fake_options={"scopes": scopes}) as h:
        h.fake.user_locales["U_LIN"] = "zh-CN"
        answer = await h.command("extend demo forever", user="U_LIN")
        assert "not a duration" in json.dumps(answer.json())
        again = await h.command("extend demo forever", user="U_LIN")
        assert "not a duration" in json.dumps(again.json())
        assert len(h.fake.calls_to("users.info")) == 1  # the failure is remembered, not asked on every request
