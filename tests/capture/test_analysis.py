"""The capture summary: flows counted from every packet, iSCSI PDUs decoded through scapy's TCP reassembly."""

from __future__ import annotations

from pathlib import Path

from services.capture.analysis import analyse_pcap
from tests.capture import pcapgen as g

PORTS = {"iscsi_port": 3260, "ui_port": 5000, "api_port": 8080}


def _analyse(path: Path):
    return analyse_pcap(path, vm1_ip=g.VM1, vm2_ip=g.VM2, **PORTS)


def test_pdus_split_joined_and_retransmitted_are_each_counted_once(tmp_path: Path):
    login_req, login_resp = bytes(g.login_request()), bytes(g.login_response())
    inquiry, report_luns = bytes(g.scsi_command(g.INQUIRY)), bytes(g.scsi_command(g.REPORT_LUNS))
    reads = b"".join(bytes(g.scsi_command(g.READ16)) for _ in range(3))
    data = bytes(g.data_in(4096))
    iscsi = (
        g.Conversation(g.VM2, g.VM1, 40000, 3260).open()
        .send(True, login_req[:30], login_req[30:])  # one PDU over two segments
        .send(False, login_resp)
        .send(True, bytes(g.text_request()) + inquiry)  # two PDUs in one segment
        .send(False, bytes(g.text_response()))
        .send(True, report_luns, again=True)  # retransmitted: still one PDU
        .send(True, reads)
        .send(False, data[:1000], data[1000:3000], data[3000:])
    )
    ui = g.Conversation(g.VM1, g.VM2, 41000, 5000).open().send(True, b"GET / HTTP/1.1\r\n\r\n")
    summary = _analyse(g.write(tmp_path / "lab.pcap", iscsi, ui))

    stats = summary.iscsi
    assert dict(stats.pdus) == {"Login Request": 1, "Login Response": 1, "Text Request": 1, "Text Response": 1,
                                "SCSI Command": 5, "SCSI Data-In": 1}
    assert dict(stats.scsi) == {"INQUIRY": 1, "REPORT LUNS": 1, "READ(16)": 3}
    assert stats.send_targets == 1 and stats.undecoded_connections == 0
    flow = summary.flows["iscsi"]
    assert (flow.client, flow.server, flow.port, flow.connections) == (g.VM2, g.VM1, 3260, 1)
    assert flow.packets == len(iscsi.packets) and flow.bytes == sum(len(p) for p in iscsi.packets)
    assert abs(flow.duration - (len(iscsi.packets) - 1) * 0.01) < 1e-6
    assert (summary.flows["ui"].packets, summary.flows["api"].packets) == (len(ui.packets), 0)
    assert summary.packets == len(iscsi.packets) + len(ui.packets)


def test_digests_negotiated_at_login_are_skipped_in_later_pdus(tmp_path: Path):
    iscsi = (
        g.Conversation(g.VM2, g.VM1, 40001, 3260).open()
        .send(True, bytes(g.login_request()))
        .send(False, bytes(g.login_response("CRC32C")))
        .send(True, bytes(g.scsi_command(g.READ_CAPACITY16, digest=True)))
        .send(False, bytes(g.data_in(32, digest=True)))
        .send(True, bytes(g.scsi_command(g.INQUIRY, digest=True)))
    )
    stats = _analyse(g.write(tmp_path / "digests.pcap", iscsi)).iscsi
    assert dict(stats.scsi) == {"READ CAPACITY(16)": 1, "INQUIRY": 1}
    assert stats.pdus["SCSI Data-In"] == 1 and stats.total == 5


def test_a_connection_already_open_is_counted_but_not_decoded(tmp_path: Path):
    midway = g.Conversation(g.VM2, g.VM1, 40002, 3260)  # no SYN: the capture started mid-stream
    midway.send(True, bytes(g.data_in(100))[20:], bytes(g.scsi_command(g.INQUIRY)))
    summary = _analyse(g.write(tmp_path / "midway.pcap", midway))
    assert summary.iscsi.total == 0 and summary.iscsi.undecoded_connections == 1
    assert summary.flows["iscsi"].packets == 2 and summary.flows["iscsi"].connections == 0


def test_a_capture_cut_by_the_byte_limit_is_read_up_to_the_cut(tmp_path: Path):
    iscsi = g.Conversation(g.VM2, g.VM1, 40003, 3260).open().send(True, bytes(g.login_request()))
    whole = g.write(tmp_path / "whole.pcap", iscsi).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:-10])
    summary = _analyse(cut)
    assert summary.packets == len(iscsi.packets) - 1
    assert summary.flows["iscsi"].connections == 1
