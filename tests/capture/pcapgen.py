"""Small, exact captures made with scapy for the analysis tests: TCP connections carrying known iSCSI PDUs.

Each PDU is built with the ISCSI layer itself (the real encoding of RFC 7143's BHS), then the byte stream is
cut into TCP segments the way a test wants: a PDU split over two segments, two PDUs in one segment, a
retransmitted segment. Timestamps advance 10 ms per packet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import wrpcap

from services.capture.iscsi import ISCSI

VM1, VM2 = "198.18.8.2", "198.18.8.3"


def login_request() -> ISCSI:
    data = b"InitiatorName=iqn.2026-11.io.labbot:vm2\x00SessionType=Normal\x00HeaderDigest=None,CRC32C\x00"
    return ISCSI(immediate=1, opcode=0x03, flags=0x87, data_len=len(data), data=data, data_pad=_pad(data))


def login_response(digest: str = "None") -> ISCSI:
    data = f"HeaderDigest={digest}\x00DataDigest=None\x00".encode()
    return ISCSI(opcode=0x23, flags=0x87, data_len=len(data), data=data, data_pad=_pad(data))


def text_request(data: bytes = b"SendTargets=All\x00") -> ISCSI:
    return ISCSI(immediate=1, opcode=0x04, flags=0x80, data_len=len(data), data=data, data_pad=_pad(data))


def text_response(data: bytes = b"TargetName=iqn.2026-11.io.labbot:lab\x00") -> ISCSI:
    return ISCSI(opcode=0x24, flags=0x80, data_len=len(data), data=data, data_pad=_pad(data))


def scsi_command(cdb: bytes, digest: bool = False) -> ISCSI:
    words = bytes(12) + cdb.ljust(16, b"\x00")
    return ISCSI(opcode=0x01, flags=0xC1, words=words, header_digest=b"\x00" * 4 if digest else b"")


def data_in(size: int, digest: bool = False) -> ISCSI:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    return ISCSI(opcode=0x25, flags=0x81, data_len=size, data=data, data_pad=_pad(data),
                 header_digest=b"\x00" * 4 if digest else b"", data_digest=b"\x00" * 4 if digest else b"")


def _pad(data: bytes) -> bytes:
    return bytes((4 - len(data) % 4) % 4)


INQUIRY = bytes([0x12, 0, 0, 0, 36, 0])
REPORT_LUNS = bytes([0xA0]) + bytes(11)
READ16 = bytes([0x88]) + bytes(15)
READ_CAPACITY16 = bytes([0x9E, 0x10]) + bytes(14)


@dataclass
class Conversation:
    """One TCP connection from VM2 (or VM1, for the UI/API flows) to a server port, segment by segment."""

    client: str
    server: str
    cport: int
    sport: int
    packets: list[Packet] = field(default_factory=list)
    seq_c: int = 1000
    seq_s: int = 5000

    def _pkt(self, from_client: bool, flags: str, payload: bytes = b"") -> Packet:
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        sport, dport = (self.cport, self.sport) if from_client else (self.sport, self.cport)
        seq, ack = (self.seq_c, self.seq_s) if from_client else (self.seq_s, self.seq_c)
        pkt = (Ether(src="52:54:00:00:00:01", dst="52:54:00:00:00:02") / IP(src=src, dst=dst)
               / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack))
        if payload:
            pkt = pkt / payload
        return pkt

    def open(self) -> Conversation:
        self.packets.append(self._pkt(True, "S"))
        self.seq_c += 1
        self.packets.append(self._pkt(False, "SA"))
        self.seq_s += 1
        self.packets.append(self._pkt(True, "A"))
        return self

    def send(self, from_client: bool, *pieces: bytes, again: bool = False) -> Conversation:
        """One segment per piece (pieces may split or join PDUs); ``again`` retransmits the last piece."""
        for piece in pieces:
            self.packets.append(self._pkt(from_client, "PA", piece))
            if again and piece is pieces[-1]:
                self.packets.append(self._pkt(from_client, "PA", piece))
            if from_client:
                self.seq_c += len(piece)
            else:
                self.seq_s += len(piece)
        return self


def write(path: Path, *conversations: Conversation) -> Path:
    """Interleave nothing: conversations one after another, 10 ms apart per packet."""
    packets = [p for c in conversations for p in c.packets]
    for index, pkt in enumerate(packets):
        pkt.time = 1_800_000_000 + index * 0.01
    wrpcap(str(path), packets)
    return path
