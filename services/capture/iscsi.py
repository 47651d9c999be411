"""iSCSI PDUs for scapy: the 48-byte Basic Header Segment of RFC 7143 as a scapy layer, reassembled by scapy.

Scapy (2.8) has no iSCSI layer, and dpkt has neither iSCSI nor TCP reassembly, so this module declares the BHS
with scapy's own field types (RFC 7143 §11.2: opcode, flags, TotalAHSLength, DataSegmentLength, LUN, ITT, the
opcode-specific words and, for a SCSI Command, the CDB at bytes 32-47) and lets scapy's ``TCPSession`` put
the TCP stream back together: ``tcp_reassemble`` only says how long one PDU is (header, AHS, optional digests,
data padded to 4 bytes), and whatever follows it is handed back as padding for the next PDU.
"""

from __future__ import annotations

import threading
from typing import Any

from scapy.fields import (
    BitEnumField,
    BitField,
    ByteField,
    ShortField,
    StrFixedLenField,
    StrLenField,
    ThreeBytesField,
    XIntField,
    XLongField,
)
from scapy.layers.inet import TCP
from scapy.packet import Packet, bind_layers

BHS_LEN = 48
MAX_PDU = 16 << 20  # a DataSegmentLength above this is not a PDU boundary we trust (MaxRecvDataSegmentLength ≤ 16M)

# RFC 7143 §11.2.1.2 (initiator opcodes 0x00-0x1f, target opcodes 0x20-0x3f).
OPCODES = {
    0x00: "NOP-Out",
    0x01: "SCSI Command",
    0x02: "Task Management Request",
    0x03: "Login Request",
    0x04: "Text Request",
    0x05: "SCSI Data-Out",
    0x06: "Logout Request",
    0x10: "SNACK Request",
    0x20: "NOP-In",
    0x21: "SCSI Response",
    0x22: "Task Management Response",
    0x23: "Login Response",
    0x24: "Text Response",
    0x25: "SCSI Data-In",
    0x26: "Logout Response",
    0x31: "Ready To Transfer (R2T)",
    0x32: "Asynchronous Message",
    0x3F: "Reject",
}

# SCSI operation codes (SPC-4/SBC-3) a lab's initiators send.
SCSI_OPS = {
    0x00: "TEST UNIT READY",
    0x03: "REQUEST SENSE",
    0x08: "READ(6)",
    0x0A: "WRITE(6)",
    0x12: "INQUIRY",
    0x1A: "MODE SENSE(6)",
    0x1B: "START STOP UNIT",
    0x25: "READ CAPACITY(10)",
    0x28: "READ(10)",
    0x2A: "WRITE(10)",
    0x2F: "VERIFY(10)",
    0x35: "SYNCHRONIZE CACHE(10)",
    0x42: "UNMAP",
    0x4D: "LOG SENSE",
    0x5A: "MODE SENSE(10)",
    0x5E: "PERSISTENT RESERVE IN",
    0x5F: "PERSISTENT RESERVE OUT",
    0x88: "READ(16)",
    0x89: "COMPARE AND WRITE",
    0x8A: "WRITE(16)",
    0x91: "SYNCHRONIZE CACHE(16)",
    0x93: "WRITE SAME(16)",
    0xA0: "REPORT LUNS",
    0xA8: "READ(12)",
    0xAA: "WRITE(12)",
}
_SERVICE_ACTION_IN_16 = 0x9E
_SA_NAMES = {0x10: "READ CAPACITY(16)", 0x12: "GET LBA STATUS"}

LOGIN_RESPONSE = 0x23
SCSI_COMMAND = 0x01
TEXT_REQUEST = 0x04


# The digests negotiated on the connection being dissected (scapy's length_from sees only the packet).
_connection = threading.local()


def _digest(which: str) -> int:
    """4 when the connection being dissected negotiated a CRC32C digest of this kind, else 0."""
    return int(getattr(_connection, "digests", {}).get(which, 0))


def _pad(length: int) -> int:
    return (4 - length % 4) % 4


class ISCSI(Packet):
    """One iSCSI PDU: the BHS fields, the AHS, the data segment (digests are skipped when negotiated)."""

    name = "iSCSI"
    fields_desc = [
        BitField("reserved", 0, 1),
        BitField("immediate", 0, 1),
        BitEnumField("opcode", 0, 6, OPCODES),
        ByteField("flags", 0),
        ShortField("specific", 0),
        ByteField("ahs_len", 0),  # TotalAHSLength, in 4-byte words
        ThreeBytesField("data_len", 0),  # DataSegmentLength, in bytes, without padding
        XLongField("lun", 0),
        XIntField("itt", 0),
        StrFixedLenField("words", b"", 28),  # bytes 20-47: opcode-specific (the CDB is words[12:28])
        StrLenField("ahs", b"", length_from=lambda p: p.ahs_len * 4),
        StrLenField("header_digest", b"", length_from=lambda p: _digest("header")),
        StrLenField("data", b"", length_from=lambda p: p.data_len),
        StrLenField("data_pad", b"", length_from=lambda p: _pad(p.data_len)),
        StrLenField("data_digest", b"", length_from=lambda p: _digest("data") if p.data_len else 0),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        # Bytes after this PDU belong to the next one: scapy's TCPSession dissects them again as padding.
        return b"", s

    @property
    def opcode_name(self) -> str:
        """The opcode's RFC name (``opcode 0xNN`` for one RFC 7143 does not define)."""
        return OPCODES.get(self.opcode, f"opcode 0x{self.opcode:02x}")

    @property
    def scsi_operation(self) -> str | None:
        """For a SCSI Command PDU, the CDB's operation by name; else None."""
        if self.opcode != SCSI_COMMAND or len(self.words) < 28:
            return None
        cdb = self.words[12:28]
        op = cdb[0]
        if op == _SERVICE_ACTION_IN_16:
            return _SA_NAMES.get(cdb[1] & 0x1F, f"SERVICE ACTION IN(16)/0x{cdb[1] & 0x1F:02x}")
        return SCSI_OPS.get(op, f"SCSI op 0x{op:02x}")

    @classmethod
    def pdu_length(cls, header: bytes, digests: dict[str, int]) -> int:
        """The whole PDU's length from its first 48 bytes (RFC 7143 §11.2: BHS, AHS, digests, padded data)."""
        ahs = header[4] * 4
        data = int.from_bytes(header[5:8], "big")
        length = BHS_LEN + ahs + digests.get("header", 0) + data + _pad(data)
        if data:
            length += digests.get("data", 0)
        return length

    @classmethod
    def tcp_reassemble(cls, data: bytes, metadata: dict[str, Any], session: dict[str, Any]) -> Packet | None:
        """scapy's TCPSession hook: one PDU once all its bytes are in, else None (and how many bytes to wait for)."""
        digests = session.setdefault("iscsi_digests", {})
        if len(data) < BHS_LEN:
            metadata["tcp_min_len"] = BHS_LEN
            return None
        length = cls.pdu_length(data, digests)
        if length - BHS_LEN > MAX_PDU:
            session["iscsi_lost_sync"] = True  # not a PDU boundary: the stream was not followed from its start
            return None
        if len(data) < length:
            metadata["tcp_min_len"] = length
            return None
        _connection.digests = digests
        try:
            pdu = cls(data)
        finally:
            _connection.digests = {}
        if pdu.opcode == LOGIN_RESPONSE:
            _note_digests(pdu, digests)
        return pdu


def _note_digests(login_response: ISCSI, digests: dict[str, int]) -> None:
    """Digests agreed at login apply to every later PDU of the connection (RFC 7143 §13.1)."""
    keys = dict(
        item.split("=", 1) for item in login_response.data.decode("ascii", "replace").split("\x00") if "=" in item
    )
    if keys.get("HeaderDigest") == "CRC32C":
        digests["header"] = 4
    if keys.get("DataDigest") == "CRC32C":
        digests["data"] = 4


_BOUND: set[int] = set()


def bind_port(port: int) -> None:
    """Make scapy dissect TCP payloads to or from ``port`` as iSCSI (once per port)."""
    if port not in _BOUND:
        bind_layers(TCP, ISCSI, dport=port)
        bind_layers(TCP, ISCSI, sport=port)
        _BOUND.add(port)
