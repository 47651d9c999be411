"""A minimal iSCSI initiator (RFC 7143) that reads a LUN's VPD pages as raw bytes.

libiscsi's ``iscsi-inq`` prints binary designators of VPD page 0x83 with ``%s``, so an NAA designator (which
contains zero bytes) comes out truncated; the wwid Linux would compute needs the bytes. This does the least
that yields them: a Normal session login without authentication or digests, SCSI commands that read data
(INQUIRY, READ CAPACITY(16)), and a logout. It is used by the nested simulator on VM2, in the sandbox only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import struct
from dataclasses import dataclass

log = logging.getLogger(__name__)

_LOGIN_REQ, _LOGIN_RSP = 0x03, 0x23
_SCSI_CMD, _SCSI_RSP, _DATA_IN = 0x01, 0x21, 0x25
_LOGOUT_REQ, _LOGOUT_RSP = 0x06, 0x26
_NOP_OUT, _NOP_IN, _REJECT = 0x00, 0x20, 0x3F
_IMMEDIATE = 0x40
_FINAL = 0x80
_NO_TAG = 0xFFFFFFFF
_OPERATIONAL, _FULL_FEATURE = 1, 3
# Login status (class, detail) of an initiator error, RFC 7143 11.13.5.
_LOGIN_ERRORS = {
    b"\x02\x01": "authentication failed",
    b"\x02\x02": "initiator not authorized",
    b"\x02\x03": "target not found, or not visible to this initiator",
}
_GOOD, _CHECK_CONDITION = 0x00, 0x02
_UNIT_ATTENTION = 0x6


class ProbeError(Exception):
    """The target refused the login or a command, or spoke something unexpected."""


@dataclass(frozen=True)
class LunProbe:
    """What a LUN says about itself."""

    vendor: str
    product: str
    page83: bytes
    serial: str
    size_bytes: int


def _sense_key(sense: bytes) -> int:
    """The sense key of fixed (0x70/0x71) or descriptor (0x72/0x73) format sense data."""
    if len(sense) >= 3 and sense[0] & 0x7F in (0x70, 0x71):
        return sense[2] & 0x0F
    if len(sense) >= 2 and sense[0] & 0x7F in (0x72, 0x73):
        return sense[1] & 0x0F
    return -1


def _keys(pairs: dict[str, str]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs.items())


def _parse_keys(data: bytes) -> dict[str, str]:
    """``key=value`` text pairs of a login PDU's data segment."""
    pairs = (item.decode("utf-8", errors="replace").partition("=") for item in data.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


class IscsiSession:
    """One iSCSI session to one target (use ``async with``)."""

    def __init__(self, host: str, port: int, target: str, initiator: str, timeout: float = 10,
                 chap: tuple[str, str] | None = None) -> None:
        self.host, self.port, self.target, self.initiator, self.timeout = host, port, target, initiator, timeout
        self.chap = chap
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._isid = b"\x80" + os.urandom(5)  # "random" ISID format
        self._itt = 0
        self._cmd_sn = 1
        self._exp_stat_sn = 0

    async def __aenter__(self) -> IscsiSession:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
        self._reader, self._writer = reader, writer
        try:
            await self._login()
        except BaseException:
            writer.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._writer is not None
        try:
            if exc_info[0] is None:
                await self._logout()
        finally:
            self._writer.close()

    def _next_itt(self) -> int:
        self._itt = (self._itt + 1) & 0x7FFFFFFF
        return self._itt

    async def _send(self, bhs: bytearray, data: bytes = b"") -> None:
        assert self._writer is not None and len(bhs) == 48
        bhs[5:8] = len(data).to_bytes(3, "big")
        self._writer.write(bytes(bhs) + _pad(data))
        await self._writer.drain()

    async def _receive(self) -> tuple[bytes, bytes]:
        assert self._reader is not None
        bhs = await asyncio.wait_for(self._reader.readexactly(48), self.timeout)
        ahs_length = bhs[4] * 4
        data_length = int.from_bytes(bhs[5:8], "big")
        body = await asyncio.wait_for(self._reader.readexactly(ahs_length + data_length + (-data_length % 4)),
                                      self.timeout)
        return bhs, body[ahs_length : ahs_length + data_length]

    async def _receive_for(self, itt: int) -> tuple[bytes, bytes]:
        """The next PDU for task ``itt``, answering the target's pings on the way."""
        while True:
            bhs, data = await self._receive()
            opcode = bhs[0] & 0x3F
            if opcode == _NOP_IN:
                ttt = int.from_bytes(bhs[20:24], "big")
                if ttt != _NO_TAG:
                    await self._nop_out(ttt, int.from_bytes(bhs[8:16], "big"))
                continue
            if opcode == _REJECT:
                raise ProbeError(f"target rejected a PDU (reason 0x{bhs[2]:02x})")
            if int.from_bytes(bhs[16:20], "big") == itt:
                return bhs, data

    async def _nop_out(self, ttt: int, lun: int) -> None:
        bhs = bytearray(48)
        bhs[0] = _NOP_OUT | _IMMEDIATE
        bhs[1] = _FINAL
        bhs[8:16] = lun.to_bytes(8, "big")
        bhs[16:20] = _NO_TAG.to_bytes(4, "big")
        bhs[20:24] = ttt.to_bytes(4, "big")
        bhs[24:28] = self._cmd_sn.to_bytes(4, "big")
        bhs[28:32] = self._exp_stat_sn.to_bytes(4, "big")
        await self._send(bhs)

    async def _login_request(self, itt: int, current: int, following: int, tsih: int, payload: bytes,
                             *, transit: bool = True) -> tuple[bytes, bytes]:
        bhs = bytearray(48)
        bhs[0] = _LOGIN_REQ | _IMMEDIATE
        bhs[1] = (_FINAL if transit else 0) | (current << 2) | (following if transit else 0)
        bhs[8:14] = self._isid
        bhs[14:16] = tsih.to_bytes(2, "big")
        bhs[16:20] = itt.to_bytes(4, "big")
        bhs[24:28] = self._cmd_sn.to_bytes(4, "big")
        bhs[28:32] = self._exp_stat_sn.to_bytes(4, "big")
        await self._send(bhs, payload)
        response, data = await self._receive_for(itt)
        if response[0] & 0x3F != _LOGIN_RSP:
            raise ProbeError(f"unexpected PDU 0x{response[0]:02x} during login")
        if response[36] != 0:
            hint = f": {_LOGIN_ERRORS[response[36:38]]}" if response[36:38] in _LOGIN_ERRORS else ""
            raise ProbeError(f"login to {self.target} refused (status 0x{response[36]:02x}{response[37]:02x}{hint})")
        self._exp_stat_sn = (int.from_bytes(response[24:28], "big") + 1) & 0xFFFFFFFF
        self._cmd_sn = int.from_bytes(response[28:32], "big")
        return response, data

    async def _chap(self) -> int:
        """The security stage with one-way CHAP (RFC 7143 12.1.3): offer CHAP (or None), take MD5 (CHAP_A=5), answer
        the target's challenge; returns the TSIH. The operational stage follows as without authentication."""
        assert self.chap is not None
        user, secret = self.chap
        # Offered as open-iscsi offers it with credentials set: CHAP, or none if the target requires nothing.
        first = _keys({"InitiatorName": self.initiator, "TargetName": self.target, "SessionType": "Normal",
                       "AuthMethod": "CHAP,None"})
        response, data = await self._login_request(self._next_itt(), 0, _OPERATIONAL, 0, first, transit=False)
        tsih = int.from_bytes(response[14:16], "big")
        method = _parse_keys(data).get("AuthMethod")
        if method == "None":
            response, _ = await self._login_request(self._next_itt(), 0, _OPERATIONAL, tsih, b"")
            if not (response[1] & _FINAL and response[1] & 0x03 == _OPERATIONAL):
                raise ProbeError(f"{self.target} did not leave the security stage")
            return int.from_bytes(response[14:16], "big")
        if method != "CHAP":
            raise ProbeError(f"{self.target} accepted neither CHAP nor no authentication (AuthMethod={method})")
        response, data = await self._login_request(self._next_itt(), 0, _OPERATIONAL, tsih, _keys({"CHAP_A": "5"}),
                                                   transit=False)
        keys = _parse_keys(data)
        if keys.get("CHAP_A") != "5" or "CHAP_I" not in keys or not keys.get("CHAP_C", "").lower().startswith("0x"):
            raise ProbeError(f"{self.target} sent no usable CHAP challenge")
        challenge = bytes.fromhex(keys["CHAP_C"][2:])
        digest = hashlib.md5(bytes([int(keys["CHAP_I"]) & 0xFF]) + secret.encode() + challenge).hexdigest()  # noqa: S324 - CHAP is MD5
        response, _ = await self._login_request(self._next_itt(), 0, _OPERATIONAL, tsih,
                                                _keys({"CHAP_N": user, "CHAP_R": "0x" + digest}))
        if not (response[1] & _FINAL and response[1] & 0x03 == _OPERATIONAL):
            raise ProbeError(f"{self.target} did not finish the CHAP stage")
        return int.from_bytes(response[14:16], "big")

    async def _login(self) -> None:
        tsih = await self._chap() if self.chap is not None else 0
        stages = [
            (0, _OPERATIONAL, {"InitiatorName": self.initiator, "TargetName": self.target,
                               "SessionType": "Normal", "AuthMethod": "None"}),
            (_OPERATIONAL, _FULL_FEATURE, {
                "HeaderDigest": "None", "DataDigest": "None", "MaxRecvDataSegmentLength": "262144",
                "InitialR2T": "Yes", "ImmediateData": "Yes", "MaxBurstLength": "262144",
                "FirstBurstLength": "65536", "MaxConnections": "1", "ErrorRecoveryLevel": "0",
                "DataPDUInOrder": "Yes", "DataSequenceInOrder": "Yes", "DefaultTime2Wait": "2",
                "DefaultTime2Retain": "0", "MaxOutstandingR2T": "1", "IFMarker": "No", "OFMarker": "No",
            }),
        ]
        if self.chap is not None:
            stages = stages[1:]
        for current, following, keys in stages:
            payload = _keys(keys)
            for _ in range(4):  # a target may ask for another round in the same stage
                response, _ = await self._login_request(self._next_itt(), current, following, tsih, payload)
                tsih = int.from_bytes(response[14:16], "big")
                payload = b""
                if response[1] & _FINAL and response[1] & 0x03 == following:
                    break
            else:
                raise ProbeError(f"login to {self.target} did not progress past stage {current}")

    async def command(self, lun: int, cdb: bytes, length: int) -> bytes:
        """Run a data-in SCSI command on ``lun``; returns the data (raises on a non-GOOD status).

        A UNIT ATTENTION (the first command after login usually gets one) is cleared by retrying, as the Linux
        SCSI layer does.
        """
        for _ in range(3):
            status, data, sense = await self._command_once(lun, cdb, length)
            if status == _GOOD:
                return data
            if status == _CHECK_CONDITION and _sense_key(sense) == _UNIT_ATTENTION:
                continue
            break
        raise ProbeError(
            f"SCSI command 0x{cdb[0]:02x} on LUN {lun} ended with status 0x{status:02x}"
            + (f" (sense key 0x{_sense_key(sense):x})" if sense else "")
        )

    async def _command_once(self, lun: int, cdb: bytes, length: int) -> tuple[int, bytes, bytes]:
        itt = self._next_itt()
        bhs = bytearray(48)
        bhs[0] = _SCSI_CMD
        bhs[1] = _FINAL | 0x40 | 0x01  # read, simple task attribute
        bhs[8:16] = (lun << 48).to_bytes(8, "big") if lun < 256 else ((0x4000 | lun) << 48).to_bytes(8, "big")
        bhs[16:20] = itt.to_bytes(4, "big")
        bhs[20:24] = length.to_bytes(4, "big")
        bhs[24:28] = self._cmd_sn.to_bytes(4, "big")
        bhs[28:32] = self._exp_stat_sn.to_bytes(4, "big")
        bhs[32:48] = cdb.ljust(16, b"\0")
        self._cmd_sn = (self._cmd_sn + 1) & 0xFFFFFFFF
        await self._send(bhs)
        buffer = bytearray(length)
        received = 0
        while True:
            response, data = await self._receive_for(itt)
            opcode = response[0] & 0x3F
            if opcode == _DATA_IN:
                offset = int.from_bytes(response[40:44], "big")
                buffer[offset : offset + len(data)] = data
                received = max(received, offset + len(data))
                if response[1] & 0x01:  # status carried in the last Data-In
                    self._exp_stat_sn = (int.from_bytes(response[24:28], "big") + 1) & 0xFFFFFFFF
                    return response[3], bytes(buffer[:received]), b""
            elif opcode == _SCSI_RSP:
                self._exp_stat_sn = (int.from_bytes(response[24:28], "big") + 1) & 0xFFFFFFFF
                if response[2] != 0:
                    raise ProbeError(f"target failed the command (response 0x{response[2]:02x})")
                sense_length = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
                return response[3], bytes(buffer[:received]), data[2 : 2 + sense_length]
            else:
                raise ProbeError(f"unexpected PDU 0x{response[0]:02x} for a SCSI command")

    async def inquiry(self, lun: int, page: int | None = None, length: int = 255) -> bytes:
        """Standard INQUIRY data, or VPD page ``page``."""
        evpd = 0 if page is None else 1
        return await self.command(lun, bytes([0x12, evpd, page or 0]) + struct.pack(">HB", length, 0), length)

    async def read_capacity16(self, lun: int) -> int:
        """The LUN's size in bytes."""
        data = await self.command(lun, bytes([0x9E, 0x10]) + bytes(8) + struct.pack(">IBB", 32, 0, 0), 32)
        last_lba, block = struct.unpack(">QI", data[:12])
        return (last_lba + 1) * block

    async def _logout(self) -> None:
        itt = self._next_itt()
        bhs = bytearray(48)
        bhs[0] = _LOGOUT_REQ | _IMMEDIATE
        bhs[1] = _FINAL  # reason 0: close the session
        bhs[16:20] = itt.to_bytes(4, "big")
        bhs[24:28] = self._cmd_sn.to_bytes(4, "big")
        bhs[28:32] = self._exp_stat_sn.to_bytes(4, "big")
        await self._send(bhs)
        with contextlib.suppress(ProbeError, OSError, asyncio.IncompleteReadError, TimeoutError):
            await self._receive_for(itt)


async def probe_lun(
    host: str, port: int, target: str, lun: int, initiator: str, timeout: float = 10,  # noqa: ASYNC109 - per I/O step
    *, chap: tuple[str, str] | None = None,
) -> LunProbe:
    """Log in to ``target`` as ``initiator`` (with CHAP ``(user, secret)`` when given) and read what identifies
    ``lun``: INQUIRY, VPD 0x80 and 0x83, size."""
    async with IscsiSession(host, port, target, initiator, timeout, chap=chap) as session:
        standard = await session.inquiry(lun)
        page80 = await session.inquiry(lun, 0x80)
        page83 = await session.inquiry(lun, 0x83)
        size = await session.read_capacity16(lun)
    serial_length = int.from_bytes(page80[2:4], "big") if len(page80) >= 4 else 0
    return LunProbe(
        vendor=standard[8:16].decode("ascii", errors="replace").strip(),
        product=standard[16:32].decode("ascii", errors="replace").strip(),
        page83=page83,
        serial=page80[4 : 4 + serial_length].decode("ascii", errors="replace").strip(),
        size_bytes=size,
    )
