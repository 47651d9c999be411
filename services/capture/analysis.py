"""What a capture shows: packets, bytes and duration per flow, and the iSCSI conversation PDU by PDU.

Read with scapy (``PcapReader``; Linux cooked captures from ``tcpdump -i any`` included). Only TCP connections
whose opening SYN is in the capture are decoded as iSCSI: a connection already open when the capture started
is counted in its flow but not decoded, because its first bytes are not a PDU boundary. A capture cut short
by its byte limit ends in a truncated record, which is read up to there.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

FLOW_KEYS = ("iscsi", "ui", "api")
MAX_RECORD = 262_144  # tcpdump's default snap length: whole segments (GSO on a veth makes them up to 64 KiB)


@dataclass
class FlowStats:
    """One flow as the capture saw it (both directions of every connection on its port)."""

    key: str
    client: str
    server: str
    port: int
    packets: int = 0
    bytes: int = 0
    connections: int = 0
    first: float | None = None
    last: float | None = None

    @property
    def duration(self) -> float:
        """Seconds from its first to its last packet."""
        return (self.last - self.first) if self.first is not None and self.last is not None else 0.0

    def add(self, size: int, at: float, syn: bool) -> None:
        """Count one packet of this flow."""
        self.packets += 1
        self.bytes += size
        self.connections += int(syn)
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)


@dataclass
class IscsiStats:
    """The iSCSI PDUs decoded, by opcode, and the SCSI operations their commands carried."""

    pdus: Counter[str] = field(default_factory=Counter)
    scsi: Counter[str] = field(default_factory=Counter)
    send_targets: int = 0
    undecoded_connections: int = 0

    @property
    def total(self) -> int:
        """PDUs decoded."""
        return sum(self.pdus.values())


@dataclass
class CaptureSummary:
    """Everything the capture's summary shows."""

    packets: int
    flows: dict[str, FlowStats]
    iscsi: IscsiStats
    truncated: bool = False


def analyse_pcap(path: Path, *, vm1_ip: str, vm2_ip: str, iscsi_port: int, ui_port: int,
                 api_port: int) -> CaptureSummary:
    """Summarise the capture at ``path`` (CPU-bound: call it in a thread)."""
    from scapy.error import Scapy_Exception
    from scapy.layers.inet import IP, TCP
    from scapy.sessions import TCPSession
    from scapy.utils import PcapReader

    from services.capture.iscsi import ISCSI, TEXT_REQUEST, bind_port

    bind_port(iscsi_port)
    flows = {
        "iscsi": FlowStats("iscsi", vm2_ip, vm1_ip, iscsi_port),
        "ui": FlowStats("ui", vm1_ip, vm2_ip, ui_port),
        "api": FlowStats("api", vm1_ip, vm2_ip, api_port),
    }
    by_port = {iscsi_port: "iscsi", ui_port: "ui", api_port: "api"}
    stats = IscsiStats()
    packets = 0
    truncated = False
    followed: set[tuple[str, int, str, int]] = set()
    unfollowed: set[tuple[str, int, str, int]] = set()
    session = TCPSession()
    seen_segments: set[tuple[str, int, int, int]] = set()
    try:
        reader = PcapReader(str(path))
    except (Scapy_Exception, OSError, EOFError) as err:
        raise CaptureFormatError(f"the capture file is not a pcap: {err}") from None
    with reader:
        while True:
            try:
                # The raw record with its header (PcapReader.read_packet hides a record cut short, and cuts
                # records at 64 KiB): scapy's own reader, one level down.
                record = reader._read_packet(size=MAX_RECORD)
            except EOFError:
                break
            except (Scapy_Exception, ValueError, struct_error()) as err:
                log.info("capture %s ends in an unreadable record: %s", path.name, err)
                truncated = True
                break
            if record is None:
                break
            data, meta = record
            if len(data) < min(meta.caplen, MAX_RECORD):  # the last record, cut by the byte limit
                truncated = True
                break
            pkt = reader.LLcls(data)
            pkt.time = meta.sec + meta.usec / (1e9 if reader.nano else 1e6)
            packets += 1
            if IP not in pkt or TCP not in pkt:
                continue
            ip, tcp = pkt[IP], pkt[TCP]
            server_port = tcp.dport if tcp.dport in by_port else tcp.sport if tcp.sport in by_port else None
            if server_port is None:
                continue
            key = by_port[server_port]
            syn = bool(tcp.flags.S) and not bool(tcp.flags.A)
            flows[key].add(len(pkt), float(pkt.time), syn)
            if key != "iscsi":
                continue
            client = (ip.src, tcp.sport) if tcp.dport == server_port else (ip.dst, tcp.dport)
            conn = (client[0], client[1], ip.dst if tcp.dport == server_port else ip.src, server_port)
            if syn:
                followed.add(conn)
                unfollowed.discard(conn)
            if conn not in followed:
                unfollowed.add(conn)
                continue
            if _retransmitted(seen_segments, ip, tcp):
                continue
            out = session.process(pkt)
            layer = out.getlayer(ISCSI) if out is not None else None
            while isinstance(layer, ISCSI):
                stats.pdus[layer.opcode_name] += 1
                operation = layer.scsi_operation
                if operation is not None:
                    stats.scsi[operation] += 1
                if layer.opcode == TEXT_REQUEST and b"SendTargets=" in bytes(layer.data):
                    stats.send_targets += 1
                layer = layer.payload
    stats.undecoded_connections = len(unfollowed)
    return CaptureSummary(packets=packets, flows=flows, iscsi=stats, truncated=truncated)


def _retransmitted(seen: set[tuple[str, int, int, int]], ip: object, tcp: object) -> bool:
    """Whether this exact segment was seen before (scapy's TCPSession forgets what it returned once a stream's
    buffer empties, so a retransmission would otherwise be decoded twice). Segments merely out of order are new
    data and go through: TCPSession orders them by sequence number."""
    size = len(bytes(tcp.payload))  # type: ignore[attr-defined]
    if not size:
        return False
    key = (ip.src, tcp.sport, tcp.seq, size)  # type: ignore[attr-defined]
    if key in seen:
        return True
    seen.add(key)
    return False


def struct_error() -> type[Exception]:
    """struct.error, which scapy lets through for a record header cut short."""
    import struct

    return struct.error


class CaptureFormatError(Exception):
    """The fetched file is not a readable capture."""
