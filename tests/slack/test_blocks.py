"""The Block Kit builders: snapshots per state, the buttons each state offers, and Slack's limits."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block

from bot.blocks import format as fmt
from bot.blocks.card import CardNote, build_lab_card
from bot.blocks.home import build_home
from bot.blocks.ids import CardBlock, CreateField, CreateModalMeta, ExtendChoice, LabAction, LabRef, parse_value
from bot.blocks.modal import build_create_modal, parse_create_form
from bot.blocks.notices import (
    build_expired,
    build_expiry_warning,
    build_health_changed,
    build_orphans_found,
    build_warning_retired,
)
from bot.blocks.replies import build_error, build_notice, build_reply
from bot.blocks.thread import build_audit_note, build_build_report, build_step_failure
from config.profiles import load_profiles
from services.db import PROJECT_ROOT
from services.dispatch import Reply, ReplyKind
from services.errors import CommandError
from tests.fakes.slack_api import message_problem, view_problem
from tests.slack.factories import NOW, STEP_NAMES, in_state, lab, step
from tests.slack.snapshot import assert_snapshot

STATES = ["requested", "provisioning", "ready", "expiring", "failed", "destroying", "destroyed"]
PROFILES = load_profiles(PROJECT_ROOT / "config" / "profiles")


def action_ids(blocks: list[dict]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def all_text(blocks: list[dict]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


@pytest.mark.parametrize("state", STATES)
def test_card_snapshot_per_state(state: str) -> None:
    message = build_lab_card(in_state(state), now=NOW)
    assert message_problem({"text": message.text, "blocks": message.blocks}) is None
    assert_snapshot(f"card_{state}", {"text": message.text, "blocks": message.blocks})


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("requested", [LabAction.EXTEND, LabAction.LOGS, LabAction.DESTROY]),
        ("provisioning", [LabAction.EXTEND, LabAction.LOGS, LabAction.DESTROY]),
        ("ready", [LabAction.EXTEND, LabAction.ACCESS, LabAction.HEALTH, LabAction.LOGS, LabAction.DESTROY]),
        ("expiring", [LabAction.EXTEND, LabAction.ACCESS, LabAction.HEALTH, LabAction.LOGS, LabAction.DESTROY]),
        ("failed", [LabAction.RETRY, LabAction.LOGS, LabAction.DESTROY]),
        ("destroying", [LabAction.LOGS]),
        ("destroyed", []),
    ],
)
def test_buttons_follow_the_state(state: str, expected: list[LabAction]) -> None:
    assert action_ids(build_lab_card(in_state(state), now=NOW).blocks) == expected


def test_failed_destroy_offers_only_retry_and_logs() -> None:
    failed = replace(in_state("failed"), failed_step="destroy", error="platform said no")
    assert action_ids(build_lab_card(failed, now=NOW).blocks) == [LabAction.RETRY, LabAction.LOGS]


def test_button_values_round_trip_and_destroy_asks_first() -> None:
    blocks = build_lab_card(in_state("ready"), now=NOW).blocks
    elements = {e["action_id"]: e for b in blocks if b["type"] == "actions" for e in b["elements"]}
    assert parse_value(LabRef, elements[LabAction.DESTROY]["value"]) == LabRef(lab_id=7, name="demo")
    assert elements[LabAction.DESTROY]["confirm"]["style"] == "danger"
    choices = [parse_value(ExtendChoice, o["value"]) for o in elements[LabAction.EXTEND]["options"]]
    assert [c.duration for c in choices] == ["1h", "4h", "1d"] and {c.lab_id for c in choices} == {7}
    with pytest.raises(CommandError, match="out of date"):
        parse_value(LabRef, '{"lab_id": "x"}')


def test_card_content_per_state() -> None:
    provisioning = all_text(build_lab_card(in_state("provisioning"), now=NOW).blocks)
    assert "45%" in provisioning and "▓" in provisioning and "Step 4 of 7: *Install ZStack on VM2*" in provisioning
    ready_lab = in_state("ready")
    ready = all_text(build_lab_card(ready_lab, now=NOW).blocks)
    assert "198.18.0.10" in ready and "*Access*" in ready
    assert "must-not-show" not in ready  # secret-looking summary keys never reach the channel
    report = all_text(build_build_report(ready_lab).blocks)  # the details moved to the thread
    assert "iqn.2026-11.io.labbot:demo" in report and "ps-sharedblock" in report and "must-not-show" not in report
    failed = all_text(build_lab_card(in_state("failed"), now=NOW).blocks)
    assert "Failed at *Install ZStack on VM2*" in failed and failed.count("installer exited with status 3") == 1
    assert "*Retry* resumes" in failed


@pytest.mark.parametrize("state", STATES)
def test_a_card_is_a_glance(state: str) -> None:
    lab = replace(in_state(state), ttl_extensions=1)
    blocks = build_lab_card(lab, now=NOW).blocks
    text = all_text(blocks)
    assert len(blocks) <= 6
    assert text.count(fmt.STATE_EMOJI[state]) == 1  # the state's mark once, not in the header and a field too
    assert len(re.findall(r":[a-z_]+:", text)) <= 2
    assert not any(mark in text for mark in fmt.STEP_EMOJI.values())  # no step list: it is in the thread
    assert "<@U_ALICE>" in text
    if state != "destroyed":
        assert "until <!date^" in text or "expired <!date^" in text
        assert "(extended once)" in text and "1 times" not in text
    assert next(b for b in blocks if b.get("block_id") == CardBlock.NEXT)  # what to do next
    assert_no_stale_times(text)


def assert_no_stale_times(text: str) -> None:
    """Times are Slack date tokens (the reader's zone, never stale), not "… UTC" or "3h 59m left"."""
    outside_tokens = re.sub(r"<!date\^\d+\^[^|>]*\|[^>]*>", "<date>", text)
    assert "UTC" not in outside_tokens, outside_tokens
    assert not re.search(r"\d+[smhd]( \d+[smhd])? (left|ago)", outside_tokens), outside_tokens


def test_card_blocks_are_valid_slack_sdk_models() -> None:
    for state in STATES:
        for message in (build_lab_card(in_state(state), now=NOW, note=CardNote("U_BOB", "Extended", NOW)),
                        build_expiry_warning(in_state(state), now=NOW), build_build_report(in_state(state))):
            assert_valid_models(message.blocks)


def assert_valid_models(blocks: list[dict]) -> None:
    """Every block parses as slack_sdk's model and passes its validation (``to_dict`` raises otherwise)."""
    for raw in blocks:
        model = Block.parse(raw)
        assert model is not None, raw
        assert model.to_dict()["type"] == raw["type"]


def test_card_says_who_did_what_and_when() -> None:
    note = CardNote(actor="U_BOB", what="Extended by 4h", at=NOW)
    blocks = build_lab_card(in_state("ready"), now=NOW, note=note).blocks
    last = next(b for b in blocks if b.get("block_id") == "lab_last_action")
    assert "<@U_BOB>" in last["elements"][0]["text"] and "Extended by 4h" in last["elements"][0]["text"]
    assert "<!date^" in last["elements"][0]["text"]


def test_thread_messages() -> None:
    failed = in_state("failed")
    failure = build_step_failure(failed, failed.steps[3])
    assert "ERROR: disk full" in all_text(failure.blocks) and "attempt 2" in all_text(failure.blocks)
    report = build_build_report(in_state("ready"))
    assert all_text(report.blocks).count(":large_green_circle:") == 7
    audit = build_audit_note(failed, actor="U_BOB", what="asked to destroy the lab", at=NOW)
    assert "<@U_BOB> asked to destroy the lab" in all_text(audit.blocks)
    assert_snapshot("thread_step_failure", failure.blocks)


def test_channel_notices_mention_the_owner() -> None:
    degraded = replace(in_state("ready"), health="degraded", health_failing=("iscsi_lun", "nested_api"))
    health = build_health_changed(degraded, now=NOW)
    text = all_text(health.blocks)
    assert "<@U_ALICE>" in text and "VM1's disk visible on VM2 over iSCSI" in text
    assert "nested ZStack API answering" in text and "iscsi_lun" not in text  # words, not check ids
    warning = build_expiry_warning(in_state("expiring"), now=NOW, max_expires_at=NOW + timedelta(days=1))
    assert action_ids(warning.blocks) == [LabAction.EXTEND]
    assert "expires <!date^" in all_text(warning.blocks) and " left" not in all_text(warning.blocks)
    for message in (health, warning):
        assert message_problem({"text": message.text, "blocks": message.blocks}) is None
        assert_valid_models(message.blocks)
        assert_no_stale_times(all_text(message.blocks))


def test_a_failed_labs_warning_offers_destroy_not_extend() -> None:
    warning = build_expiry_warning(in_state("failed"), now=NOW)
    assert action_ids(warning.blocks) == [LabAction.RETRY, LabAction.DESTROY]
    assert "failed" in all_text(warning.blocks)
    at_the_limit = build_expiry_warning(in_state("expiring"), now=NOW, extendable=False)
    assert LabAction.EXTEND not in action_ids(at_the_limit.blocks)
    assert "cannot be extended" in all_text(at_the_limit.blocks)


def test_retired_warning_has_no_buttons_and_says_what_happened() -> None:
    retired = build_warning_retired(in_state("ready"), outcome="extended", actor="U_BOB")
    assert not action_ids(retired.blocks)
    assert "extended by <@U_BOB>" in all_text(retired.blocks) and "until <!date^" in all_text(retired.blocks)
    assert_valid_models(retired.blocks)


def test_every_time_is_a_date_token() -> None:
    extended = build_reply(Reply(ReplyKind.EXTENDED, text="Lab `demo` now expires 2026-11-25 16:00 UTC",
                                 lab=in_state("ready")), now=NOW)
    audit = build_audit_note(in_state("ready"), actor="U_BOB", what="extended the lab until 2026-11-25 16:00 UTC",
                             at=NOW)
    expired = build_expired(in_state("destroying"))
    orphans = build_orphans_found("2 resources", {"labbot-x-vm1": "uuid; first seen 2026-11-25 10:00 UTC; kept"})
    listing = build_reply(Reply(ReplyKind.LABS, labs=(in_state("ready"), in_state("expiring"))), now=NOW)
    notice = build_notice("Class `c1` expires 2026-11-25 18:00 UTC; extend it with `/lab class extend c1`")
    error = build_error("lab `demo` runs until 2026-11-26 12:00 UTC at most")
    for message in (extended, audit, expired, orphans, listing, notice, error):
        text = all_text(message.blocks)
        assert "<!date^" in text, text
        assert_no_stale_times(text)
        assert_valid_models(message.blocks)


def test_health_report_says_what_each_check_looks_at() -> None:
    from services.labs.build.health import CheckResult, HealthReport

    report = HealthReport(lab=in_state("ready"), checks=(CheckResult("outer_vms", True, 30),
                                                          CheckResult("ssh_vm2", False, 900, "timed out")))
    text = all_text(build_reply(Reply(ReplyKind.HEALTH, lab=report.lab, data={"report": report}), now=NOW).blocks)
    assert "VM1 and VM2 running on the lab platform" in text and "SSH to VM2 through VM1" in text
    assert "outer_vms" not in text and "ssh_vm2" not in text


def test_unknown_errors_show_only_an_id() -> None:
    message = build_error("KeyError: 'secret-token'", error_id="e-1a2b3c")
    assert "e-1a2b3c" in all_text(message.blocks) and "secret-token" not in all_text(message.blocks)
    assert "e-1a2b3c" in message.text and "secret-token" not in message.text


def test_every_reply_kind_has_a_builder() -> None:
    ready = in_state("ready")
    replies = [
        Reply(ReplyKind.HELP, text="`/lab help`: this help"),
        Reply(ReplyKind.CREATED, text="Creating lab `demo`…", lab=ready),
        Reply(ReplyKind.LAB, lab=ready),
        Reply(ReplyKind.LABS, labs=(ready, in_state("failed"))),
        Reply(ReplyKind.LOGS, steps=in_state("failed").steps, data={"name": "demo"}),
        Reply(ReplyKind.CONFIRM_DESTROY, lab=ready),
        Reply(ReplyKind.DESTROYING, text="Destroying…", lab=ready),
        Reply(ReplyKind.EXTENDED, text="extended", lab=ready),
        Reply(ReplyKind.RETRYING, text="retrying", lab=ready),
    ]
    for reply in replies:
        message = build_reply(reply, now=NOW)
        assert message_problem({"text": message.text, "blocks": message.blocks}) is None, reply.kind
    confirm = build_reply(Reply(ReplyKind.CONFIRM_DESTROY, lab=ready), now=NOW)
    assert action_ids(confirm.blocks) == [LabAction.DESTROY, LabAction.CANCEL]


def test_create_modal_and_its_validation() -> None:
    view = build_create_modal(profiles=PROFILES, default_profile="sandbox", meta=CreateModalMeta(channel_id="C1"))
    assert view_problem(view, "modal") is None
    assert parse_value(CreateModalMeta, view["private_metadata"]).channel_id == "C1"
    assert_snapshot("create_modal", view)

    def values(name: str | None, profile: str, ttl: str | None) -> dict:
        return {
            CreateField.NAME: {CreateField.NAME: {"type": "plain_text_input", "value": name}},
            CreateField.PROFILE: {CreateField.PROFILE: {"type": "static_select",
                                                        "selected_option": {"value": profile}}},
            CreateField.TTL: {CreateField.TTL: {"type": "static_select",
                                                "selected_option": {"value": ttl} if ttl else None}},
        }

    form = parse_create_form(values("alice-1", "sandbox", "4h"), PROFILES)
    assert form.name == "alice-1" and form.profile == "sandbox" and form.ttl == timedelta(hours=4)
    assert parse_create_form(values(None, "zcct", None), PROFILES).name is None
    errors = parse_create_form(values("Bad_Name", "nope", "3d"), PROFILES)
    assert set(errors) == {CreateField.NAME, CreateField.PROFILE}
    assert CreateField.TTL in parse_create_form(values("ok-name", "sandbox", "3d"), PROFILES)  # sandbox max 1d


def test_home_for_users_and_admins() -> None:
    mine = [in_state("ready"), replace(in_state("provisioning"), id=8, name="second")]
    everyone = [*mine, replace(in_state("failed"), id=9, name="bobs", owner="U_BOB")]
    user_view = build_home(user_id="U_ALICE", my_labs=mine, all_labs=None, now=NOW)
    admin_view = build_home(user_id="U_ALICE", my_labs=mine, all_labs=everyone, now=NOW)
    for view in (user_view, admin_view):
        assert view_problem(view, "home") is None
    assert "Every lab" not in all_text(user_view["blocks"]) and "Next cleanups" in all_text(admin_view["blocks"])
    assert "bobs" in all_text(admin_view["blocks"]) and "bobs" not in all_text(user_view["blocks"])
    assert LabAction.OPEN_CREATE in action_ids(user_view["blocks"])
    assert action_ids(user_view["blocks"]).count(LabAction.DESTROY) == 2
    assert_snapshot("home_admin", admin_view)


def test_home_with_very_many_labs_stays_within_the_view_limit() -> None:
    many = [replace(in_state("ready"), id=i, name=f"lab-{i}") for i in range(1, 80)]
    view = build_home(user_id="U_ALICE", my_labs=many, all_labs=many * 3, now=NOW)
    assert view_problem(view, "home") is None


huge = st.text(min_size=0, max_size=30_000)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(error=huge, output=huge, progress=st.text(max_size=500), steps_count=st.integers(0, 120),
       summary_value=st.text(max_size=5000), profile=st.text(min_size=1, max_size=300))
def test_any_lab_fits_slacks_limits(error: str, output: str, progress: str, steps_count: int,
                                    summary_value: str, profile: str) -> None:
    many = tuple(
        step(f"s{i}", STEP_NAMES[i % len(STEP_NAMES)][1] * 3, ["done", "running", "failed", "pending"][i % 4],
             progress=progress, error=error, output=output)
        for i in range(steps_count)
    )
    for state in STATES:
        subject = lab(name="a" * 31, state=state, steps=many, error=error, failed_step="x" * 48, profile=profile,
                      summary={f"k{i}": summary_value for i in range(30)}, health="degraded",
                      health_failing=tuple("c" * 100 for _ in range(20)), vm1_public_ip="198.18.0.1",
                      iscsi_iqn="iqn." + "x" * 219)
        messages = [build_lab_card(subject, now=NOW, note=CardNote("U1", error[:300], NOW)),
                    build_build_report(subject), build_health_changed(subject, now=NOW, detail=error),
                    build_reply(Reply(ReplyKind.LOGS, steps=many, data={"name": "a" * 31}), now=NOW)]
        messages += [build_step_failure(subject, s) for s in many[:3]]
        for message in messages:
            assert message_problem({"text": message.text, "blocks": message.blocks}) is None


def test_access_and_health_replies() -> None:
    from services.labs.access import AccessDetails
    from services.labs.build.health import CheckResult, HealthReport
    from services.ssh.access import access_commands

    ready = in_state("ready")
    access = AccessDetails(lab=ready, commands=access_commands("198.18.0.10", 22, "198.19.0.11", "root"),
                           root_password="r00t-Pass", zstack_user="admin", zstack_password="zs-Pass")
    message = build_reply(Reply(ReplyKind.ACCESS, lab=ready, data={"access": access}), now=NOW)
    text = all_text(message.blocks)
    assert "ssh -J root@198.18.0.10 root@198.19.0.11" in text and "r00t-Pass" in text and "zs-Pass" in text
    assert "r00t-Pass" not in message.text  # the notification preview never carries a password
    report = HealthReport(lab=ready, checks=(CheckResult("ssh_vm1", True, 12), CheckResult("iscsi", False, 900,
                                                                                          "no session")))
    health = all_text(build_reply(Reply(ReplyKind.HEALTH, lab=ready, data={"report": report}), now=NOW).blocks)
    assert "degraded" in health and "no session" in health and "`12 ms`" in health
