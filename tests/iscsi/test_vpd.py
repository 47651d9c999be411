"""Which wwid a LUN gets: scsi_id's choice among VPD 0x83 designators, and how tgt and LIO build them."""

from __future__ import annotations

import pytest

from services.iscsi import vpd


def designator(code_set: int, kind: int, body: bytes, association: int = 0, protocol: int = 0, piv: bool = False):
    return bytes([(protocol << 4) | code_set, (0x80 if piv else 0) | (association << 4) | kind, 0, len(body)]) + body


def page(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return bytes([0x00, 0x83]) + len(body).to_bytes(2, "big") + body


def tgt_page(scsi_id: str, numeric_id: int) -> bytes:
    """Page 0x83 as tgt 1.0.85 builds it (usr/spc.c update_vpd_83)."""
    local = bytearray(numeric_id.to_bytes(8, "big"))
    local[0] |= 0x30
    return page(
        designator(2, 1, scsi_id.encode().ljust(24, b"\0")),
        designator(1, 3, bytes(local)),
        designator(1, 3, vpd.tgt_naa6(scsi_id)),
    )


def lio_page(serial: str, iqn: str) -> bytes:
    """Page 0x83 as LIO builds it (target_core_spc.c): NAA 6, T10 id, port and group designators, SCSI names."""
    name = f"{iqn},t,0x0001".encode()
    name += b"\0" * (4 - len(name) % 4)
    return page(
        designator(1, 3, vpd.lio_naa6(serial)),
        designator(2, 1, b"LIO-ORG " + serial.encode()),
        designator(1, 4, b"\0\0\0\1", association=1, protocol=5, piv=True),
        designator(1, 5, b"\0\0\0\0", association=1, protocol=5, piv=True),
        designator(1, 6, b"\0\0\0\0"),
        designator(3, 8, name, association=1, protocol=5, piv=True),
    )


def test_tgt_naa6_reads_the_scsi_id_as_hex_digits() -> None:
    assert vpd.tgt_naa6("0123456789abcdef01234567").hex() == "6000000001234567" "89abcdef01234567"
    # tgt's default id: letters that are not hex digits count as 0 (but "E" is one)
    assert vpd.tgt_naa6("IET     00010001").hex() == "60000000000000000e00000000010001"


def test_tgt_lun_wwid_is_its_naa6_designator() -> None:
    raw = tgt_page("34c861468f1e2045a6b4764d", numeric_id=(1 << 32) | 1)
    assert vpd.wwid_from_page83(raw) == "36000000034c861468f1e2045a6b4764d"
    assert vpd.wwid_from_page83(raw) == vpd.tgt_wwid("34c861468f1e2045a6b4764d")


def test_lio_wwid_is_company_id_and_the_serial_digits() -> None:
    serial = "3f5a1c52-6f0e-4d0a-9a1e-2b7f0e8c3d11"
    assert vpd.lio_wwid(serial) == "36001405" "3f5a1c526f0e4d0a9a1e2b7f0"
    assert vpd.wwid_from_page83(lio_page(serial, "iqn.2026-11.io.labbot:lab1")) == vpd.lio_wwid(serial)


def test_scsi_id_preference_order() -> None:
    t10 = designator(2, 1, b"VENDOR  serial-1")
    naa3 = designator(1, 3, bytes.fromhex("3000000100000001"))
    naa5 = designator(1, 3, bytes.fromhex("5000c50012345678"))
    eui = designator(1, 2, bytes.fromhex("0011223344556677"))
    assert vpd.wwid_from_page83(page(t10)) == "1VENDOR  serial-1"
    assert vpd.wwid_from_page83(page(t10, eui)) == "20011223344556677"
    assert vpd.wwid_from_page83(page(t10, eui, naa3)) == "33000000100000001"
    assert vpd.wwid_from_page83(page(naa3, naa5, t10)) == "35000c50012345678"


def test_designators_of_a_target_port_are_not_the_lun() -> None:
    port_naa = designator(1, 3, bytes.fromhex("6001405000000000000000000000000a"), association=1)
    assert vpd.wwid_from_page83(page(port_naa)) is None
    assert vpd.wwid_from_page83(page(port_naa, designator(2, 1, b"X"))) == "1X"


def test_truncated_and_wrong_pages() -> None:
    with pytest.raises(ValueError, match="not a VPD page 0x83"):
        vpd.designators(bytes([0, 0x80, 0, 0]))
    full = tgt_page("0123", 1)
    assert len(vpd.designators(full[:37])) == 1  # a short read keeps the complete designators only
    assert vpd.wwid_from_page83(page()) is None


def test_identifiers_are_stable_and_differ_between_labs() -> None:
    one, two = "iqn.2026-11.io.labbot:lab1", "iqn.2026-11.io.labbot:lab2"
    assert vpd.scsi_id_for(one) == vpd.scsi_id_for(one) != vpd.scsi_id_for(two)
    assert len(vpd.scsi_id_for(one)) == 24 and len(vpd.serial_for(one)) <= 36
    assert vpd.tgt_wwid(vpd.scsi_id_for(one)) != vpd.tgt_wwid(vpd.scsi_id_for(two))
