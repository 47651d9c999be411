"""The nested VM's image in the lab-in-a-box: a tiny real qcow2, made here with ``qemu-img``, never downloaded.

The sandbox profile names it (``nested.image.file``); labbot uploads it to VM1 and serves it there, and the
nested simulator's AddImage downloads it from VM1 and checks it is really a qcow2 image, as ZStack's backup
storage agent does with ``qemu-img info``.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from sandbox.system import SandboxError
from sandbox.zstack_sim.hooks import ImageFetched

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parents[1]
NESTED_IMAGE = PROJECT_DIR / "build" / "sandbox" / "nested-cirros.qcow2"  # what config/profiles/sandbox.yaml names
VIRTUAL_SIZE = "112M"  # CirrOS 0.6's virtual size; the file itself is a few hundred KiB


def ensure_nested_image(path: Path = NESTED_IMAGE) -> Path:
    """Make the qcow2 image at ``path`` unless it is there; concurrent callers never see a half-written file."""
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        result = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(partial), VIRTUAL_SIZE],
                                capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise SandboxError("qemu-img is missing (apt-get install -y qemu-utils); it makes the nested image") from None
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SandboxError(f"qemu-img could not make {path}: {result.stderr.strip()[-300:]}")
    os.replace(partial, path)
    log.info("made the sandbox's nested image %s (%s qcow2)", path, VIRTUAL_SIZE)
    return path


MAX_IMAGE_BYTES = 1 << 30  # the sandbox's images are tiny; anything bigger is not one of them
# Signatures ``qemu-img info`` recognises first (offset, bytes, format); anything else it calls raw.
_SIGNATURES = ((0, b"QFI\xfb", "qcow2"), (0, b"KDMV", "vmdk"), (0, b"vhdxfile", "vhdx"), (0, b"conectix", "vpc"),
               (64, b"\x7f\x10\xda\xbe", "vdi"), (0x8001, b"CD001", "iso"))


def image_format(head: bytes) -> str:
    """The format qemu-img would report for a file starting with ``head`` (the first 64 KiB or all of it).

    qemu-img probes an ISO 9660 file as raw; ZStack's ``linux.get_img_file_fmt`` does the same. We name it
    ``iso`` so that a CD image given as a disk image is refused with a clear reason.
    """
    for offset, magic, name in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return name
    return "raw"


def download_and_inspect(url: str, *, timeout: float) -> ImageFetched:
    """GET ``url`` (at most ``MAX_IMAGE_BYTES``), and report its format, virtual size and file size."""
    if not url.startswith(("http://", "https://")):
        raise SandboxError(f"the lab-in-a-box downloads only http(s) images, not {url}")
    head = b""
    total = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) checked above
            while chunk := response.read(1 << 16):
                if len(head) < 1 << 16:
                    head += chunk[: (1 << 16) - len(head)]
                total += len(chunk)
                if total > MAX_IMAGE_BYTES:
                    raise SandboxError(f"{url} is larger than {MAX_IMAGE_BYTES} bytes")
    except urllib.error.HTTPError as err:
        raise SandboxError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise SandboxError(f"{url}: {getattr(err, 'reason', err)}") from None
    fmt = image_format(head)
    size = struct.unpack(">Q", head[24:32])[0] if fmt == "qcow2" and len(head) >= 32 else total
    log.info("downloaded %s: %s, %d bytes, virtual size %d", url, fmt, total, size)
    return ImageFetched(fmt, size, total)
