"""What goes in a lab's thread besides messages: its picture (a PNG, or the text tree when Graphviz cannot draw)
and its packet captures (a summary message, then the pcap). Pure builders: domain values in, messages out.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.blocks.kit import Message, code_block, escape, fallback, section
from bot.capture_text import summary_lines
from bot.picture import TEXT as PICTURE_TEXT
from bot.picture import text_tree
from services.capture.service import CaptureReport
from services.i18n import N_, Texts
from services.labs.picture import LabPicture

# Every user-facing string of this module (one place, for the message catalogue).
TEXT = Texts({
    "picture_title": N_("Lab {lab}"),
    "picture_comment": N_("The picture of lab *{lab}*: VM1's three roles, the iSCSI target, VM2's ZStack and "
                          "the three flows with their ports."),
    "picture_alt": N_("Diagram of lab {lab}: VM1 {vm1} (jump host, iSCSI target {iqn}) and VM2 {vm2} "
                      "(ZStack: zone, cluster, host, SharedBlock storage, nested VM), with the iSCSI, UI and "
                      "API flows."),
    "capture_head": N_(":mag: *Packet capture of lab {lab}* (by <@{actor}>)"),
    "capture_title": N_("Capture of lab {lab} ({flows})"),
    "capture_comment": N_("The capture itself: open it in Wireshark (`{name}`)."),
})


@dataclass(frozen=True)
class FileShare:
    """A file for a lab's thread (files.getUploadURLExternal + files.completeUploadExternal)."""

    filename: str
    data: bytes
    title: str
    comment: str
    alt_txt: str | None = None
    snippet_type: str | None = None


def build_picture_share(picture: LabPicture, png: bytes) -> FileShare:
    """The picture as a PNG for the thread."""
    return FileShare(
        filename=f"{picture.lab}-picture.png",
        data=png,
        title=TEXT["picture_title"].format(lab=picture.lab),
        comment=TEXT["picture_comment"].format(lab=picture.lab),
        alt_txt=TEXT["picture_alt"].format(lab=picture.lab, vm1=picture.vm1_public_ip, vm2=picture.vm2_ip,
                                           iqn=picture.iscsi_iqn)[:1000],
    )


def build_picture_text(picture: LabPicture, reason: str) -> Message:
    """The picture as a text tree, when no PNG could be made (and why)."""
    note = PICTURE_TEXT["no_graphviz"].format(reason=reason)
    tree = code_block("\n".join(text_tree(picture)))
    return Message(text=fallback(note), blocks=[section(escape(note)), section(tree)])


def build_capture_summary(report: CaptureReport, *, actor: str) -> Message:
    """The capture's summary, posted just before its pcap."""
    head = TEXT["capture_head"].format(lab=escape(report.lab.name), actor=actor)
    lines = summary_lines(report)
    return Message(text=fallback(lines[0]), blocks=[section(head), section(code_block("\n".join(lines)))])


def build_capture_share(report: CaptureReport, data: bytes) -> FileShare:
    """The pcap for the thread."""
    return FileShare(filename=report.filename, data=data,
                     title=TEXT["capture_title"].format(lab=report.lab.name, flows=report.spec.flows),
                     comment=TEXT["capture_comment"].format(name=report.filename))
