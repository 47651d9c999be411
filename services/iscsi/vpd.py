"""LUN identifiers: the wwid Linux gives a LUN, from VPD page 0x83, and how each target builds that page.

ZStack identifies SharedBlock disks by the wwid that ``scsi_id -g -u`` prints. ``scsi_id`` walks the
designators of VPD page 0x83 in a fixed order of preference (NAA IEEE Registered Extended first, then other
NAA, EUI-64, T10 vendor id), keeps only those associated with the logical unit, and prints the designator type
as one hex digit followed by the designator (hex digits for binary, the text for ASCII).

The targets build page 0x83 from their own settings, which is how labbot knows the wwid before any initiator
looks (and why the nested discovery, which reads the page over the wire, must arrive at the same value):

* tgt (``usr/spc.c``): an ASCII T10 designator with ``scsi_id``, an NAA 3 with a numeric id, and an NAA 6
  whose 128 bits are the ``scsi_id`` text read as hex digits, right-aligned, with the top nibble set to 6
  (characters that are not hex digits count as 0).
* LIO (``target_core_spc.c``): an NAA 6 made of the company id 0x001405 and the first 25 hex digits of the
  unit serial (``vpd_unit_serial``, a uuid that targetcli shows as the storage object's ``wwn``).
"""

from __future__ import annotations

import hashlib
import logging
import string

log = logging.getLogger(__name__)

_CODE_BINARY = 1
_CODE_ASCII = 2
_TYPE_T10 = 1
_TYPE_EUI64 = 2
_TYPE_NAA = 3
_NAA_IEEE_REGISTERED_EXTENDED = 6
_NAA_IEEE_REGISTERED = 5

# (designator type, NAA type or None for "any", code set) in scsi_id's order of preference.
_PREFERENCE = [
    (_TYPE_NAA, _NAA_IEEE_REGISTERED_EXTENDED, _CODE_BINARY),
    (_TYPE_NAA, _NAA_IEEE_REGISTERED_EXTENDED, _CODE_ASCII),
    (_TYPE_NAA, _NAA_IEEE_REGISTERED, _CODE_BINARY),
    (_TYPE_NAA, _NAA_IEEE_REGISTERED, _CODE_ASCII),
    (_TYPE_NAA, None, _CODE_BINARY),
    (_TYPE_NAA, None, _CODE_ASCII),
    (_TYPE_EUI64, None, _CODE_BINARY),
    (_TYPE_EUI64, None, _CODE_ASCII),
    (_TYPE_T10, None, _CODE_BINARY),
    (_TYPE_T10, None, _CODE_ASCII),
]

LIO_COMPANY_ID = 0x001405
TGT_SCSI_ID_LENGTH = 24  # SCSI_ID_LEN in tgt


def designators(page: bytes) -> list[tuple[int, int, int, bytes]]:
    """(code set, association, designator type, designator bytes) for each designator of a 0x83 page."""
    if len(page) < 4 or page[1] != 0x83:
        raise ValueError("not a VPD page 0x83")
    end = min(len(page), 4 + int.from_bytes(page[2:4], "big"))
    found = []
    offset = 4
    while offset + 4 <= end:
        length = page[offset + 3]
        body = page[offset + 4 : offset + 4 + length]
        if len(body) < length:
            break
        found.append((page[offset] & 0x0F, (page[offset + 1] >> 4) & 0x03, page[offset + 1] & 0x0F, body))
        offset += 4 + length
    return found


def wwid_from_page83(page: bytes) -> str | None:
    """The wwid ``scsi_id -g -u`` would print for a LUN with this VPD page 0x83, or None if it has no usable id."""
    entries = [d for d in designators(page) if d[1] == 0]  # associated with the logical unit
    for wanted_type, wanted_naa, wanted_code in _PREFERENCE:
        for code, _, kind, body in entries:
            if kind != wanted_type or code != wanted_code or not body:
                continue
            if wanted_naa is not None and body[0] >> 4 != wanted_naa:
                continue
            text = body.decode("ascii", errors="replace") if code == _CODE_ASCII else body.hex()
            return f"{kind:x}{text}"
    return None


def tgt_naa6(scsi_id: str) -> bytes:
    """The 16-byte NAA 6 designator tgt derives from a LUN's ``scsi_id`` text."""
    value = 0
    for char in scsi_id[:TGT_SCSI_ID_LENGTH]:
        digit = int(char, 16) if char in string.hexdigits else 0
        value = ((value << 4) | digit) & ((1 << 128) - 1)
    raw = bytearray(value.to_bytes(16, "big"))
    raw[0] = (raw[0] & 0x0F) | (_NAA_IEEE_REGISTERED_EXTENDED << 4)
    return bytes(raw)


def tgt_wwid(scsi_id: str) -> str:
    """The wwid of a tgt LUN with this ``scsi_id`` (its NAA 6 designator wins in scsi_id's order)."""
    return f"{_TYPE_NAA:x}{tgt_naa6(scsi_id).hex()}"


def lio_naa6(unit_serial: str, company_id: int = LIO_COMPANY_ID) -> bytes:
    """The 16-byte NAA 6 designator LIO derives from a storage object's unit serial."""
    nibbles = [6, (company_id >> 20) & 0xF, (company_id >> 16) & 0xF, (company_id >> 12) & 0xF,
               (company_id >> 8) & 0xF, (company_id >> 4) & 0xF, company_id & 0xF]
    nibbles += [int(c, 16) for c in unit_serial if c in string.hexdigits][:25]
    nibbles += [0] * (32 - len(nibbles))
    return bytes((nibbles[i] << 4) | nibbles[i + 1] for i in range(0, 32, 2))


def lio_wwid(unit_serial: str) -> str:
    """The wwid of a LIO LUN whose storage object has this unit serial (targetcli's ``wwn``)."""
    return f"{_TYPE_NAA:x}{lio_naa6(unit_serial).hex()}"


def scsi_id_for(iqn: str, lun: int = 1) -> str:
    """A tgt ``scsi_id`` for a lab's LUN: 24 hex digits derived from the target name (stable, unique per lab)."""
    return hashlib.sha256(f"{iqn}/{lun}".encode()).hexdigest()[:TGT_SCSI_ID_LENGTH]


def serial_for(iqn: str, lun: int = 1) -> str:
    """A unit serial number (VPD 0x80) for a lab's LUN, derived like ``scsi_id_for``."""
    return "lb" + hashlib.sha256(f"serial:{iqn}/{lun}".encode()).hexdigest()[:14]
