"""Looking for secrets in captured output: each secret in the encodings a leak would plausibly take."""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.parse
from collections.abc import Iterable, Mapping


def pem_body_lines(private_key: str) -> list[str]:
    """The base64 lines of a PEM / OpenSSH private key (a leak of any one of them is a leak of the key)."""
    return [line.strip() for line in private_key.splitlines()
            if line.strip() and not line.startswith("-----") and len(line.strip()) >= 40]


def encodings(name: str, value: str) -> dict[str, str]:
    """``{label: needle}``: the raw value, its base64, URL and JSON-escaped forms, and its SHA-512 hex (what the
    ZStack login sends instead of the password). Values under 8 characters would match by chance and are refused."""
    if len(value) < 8:
        raise ValueError(f"secret {name} is too short to scan for reliably")
    needles = {
        f"{name} (raw)": value,
        f"{name} (base64)": base64.b64encode(value.encode()).decode().rstrip("="),
        f"{name} (urlencoded)": urllib.parse.quote(value, safe=""),
        f"{name} (sha512)": hashlib.sha512(value.encode()).hexdigest(),
    }
    if "\n" in value:
        needles[f"{name} (json-escaped)"] = value.replace("\n", "\\n")[:200]
        for index, line in enumerate(pem_body_lines(value)):
            needles[f"{name} (PEM line {index})"] = line
    return needles


def find_secrets(secrets: Mapping[str, str], sources: Mapping[str, Iterable[str | bytes]]) -> list[str]:
    """Every (secret encoding, source) pair where the needle occurs, case-insensitively for hex digests."""
    needles: dict[str, str] = {}
    for name, value in secrets.items():
        needles.update(encodings(name, value))
    found = []
    for source, items in sources.items():
        for item in items:
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
            for label, needle in needles.items():
                flags = re.IGNORECASE if label.endswith("(sha512)") else 0
                if re.search(re.escape(needle), text, flags):
                    found.append(f"{label} in {source}: …{_around(text, needle)}…")
    return found


def _around(text: str, needle: str) -> str:
    at = text.lower().find(needle.lower())
    return text[max(0, at - 40):at].replace("\n", " ") + "<SECRET>"
