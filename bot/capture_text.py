"""A capture's summary as lines a student can read (shared by the Slack thread and the console)."""

from __future__ import annotations

from services.capture.service import CaptureReport
from services.i18n import N_, Texts

# Every user-facing string of this module (one place, for the message catalogue).
TEXT = Texts({
    "title": N_("Packet capture on VM1 of lab {lab}: {flows}, {seconds}s / {packets} packets at most"),
    "file": N_("{name}: {size} bytes, {packets} packets{cut}"),
    "cut": N_(" (stopped at the {limit} byte limit)"),
    "exercised": N_("Traffic made for it: {what}"),
    "flows": N_("Flows (both directions):"),
    "flow": N_("  {label:<34} {packets:>6} packets {bytes:>10} bytes {duration:>7.2f}s {conns} connection(s)"),
    "flow_iscsi": N_("VM2 initiator {client} → VM1 {server}:{port}"),
    "flow_ui": N_("UI {client} → VM2 {server}:{port}"),
    "flow_api": N_("API {client} → VM2 {server}:{port}"),
    "pdus": N_("iSCSI PDUs decoded: {total}"),
    "pdu": N_("  {name:<28} {count:>6}"),
    "send_targets": N_("  (SendTargets discoveries: {count})"),
    "scsi": N_("SCSI operations in the commands:"),
    "no_pdus": N_("No iSCSI PDUs decoded (no iSCSI connection opened while the capture ran; --exercise-io "
                  "makes some)."),
    "undecoded": N_("{count} iSCSI connection(s) were already open when the capture started: counted, not decoded."),
})


def summary_lines(report: CaptureReport) -> list[str]:
    """The summary of one capture, line by line."""
    spec, summary = report.spec, report.summary
    lines = [
        TEXT["title"].format(lab=report.lab.name, flows=spec.flows, seconds=spec.seconds, packets=spec.packets),
        TEXT["file"].format(name=report.filename, size=report.size, packets=summary.packets,
                            cut=TEXT["cut"].format(limit=spec.max_bytes) if report.hit_byte_limit else ""),
    ]
    if report.exercised:
        lines.append(TEXT["exercised"].format(what=report.exercised))
    lines.append(TEXT["flows"])
    for key in spec.flow_keys:
        flow = summary.flows[key]
        label = TEXT[f"flow_{key}"].format(client=flow.client, server=flow.server, port=flow.port)
        lines.append(TEXT["flow"].format(label=label, packets=flow.packets, bytes=flow.bytes,
                                         duration=flow.duration, conns=flow.connections))
    if "iscsi" in spec.flow_keys:
        iscsi = summary.iscsi
        if iscsi.total:
            lines.append(TEXT["pdus"].format(total=iscsi.total))
            lines += [TEXT["pdu"].format(name=name, count=count) for name, count in iscsi.pdus.most_common()]
            if iscsi.send_targets:
                lines.append(TEXT["send_targets"].format(count=iscsi.send_targets))
            if iscsi.scsi:
                lines.append(TEXT["scsi"])
                lines += [TEXT["pdu"].format(name=name, count=count) for name, count in iscsi.scsi.most_common()]
        else:
            lines.append(TEXT["no_pdus"])
        if iscsi.undecoded_connections:
            lines.append(TEXT["undecoded"].format(count=iscsi.undecoded_connections))
    return lines
