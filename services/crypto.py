"""Encryption of the secrets labbot must keep (per-lab SSH private keys, host and nested passwords, CHAP
secrets): every ``*_enc`` column holds ciphertext only, so a leaked database does not leak a way into the labs.

Format ``v2``: ``v2$<salt>$<Fernet token>``, the Fernet key (AES-128-CBC + HMAC-SHA256) derived from
``LABBOT_SECRET_KEY`` with HKDF-SHA256 and a random 16-byte salt per ciphertext (RFC 5869; the key itself must
be high-entropy, which ``secret_key_problem`` enforces where a real database is opened). Ciphertexts of the
first format (a bare Fernet token keyed with an unsalted SHA-256 of the key) still decrypt, and
``labbot secret-key rotate`` rewrites them as ``v2``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
import secrets
from collections import Counter

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from config.settings import Settings
from services.errors import ConfigError
from services.i18n import _

V2 = "v2$"
_INFO = b"labbot-secretbox-v2"
# The demo key is published (config.settings' default): fine for the demo's throw-away database only.
DEMO_KEY = "labbot-demo-secret-key-change-me-in-production"
_PLACEHOLDER = re.compile(r"(changeme|change-me|change_me|secret-?key|password|example|placeholder|your[-_]|xxxx|<.*>)",
                          re.IGNORECASE)
MIN_LENGTH = 32
MIN_BITS = 128


def new_secret_key() -> str:
    """A fresh key: 32 random bytes, URL-safe (43 characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def secret_key_problem(key: str) -> str | None:
    """Why ``key`` is not fit to protect real secrets, or None when it is.

    Refused: the published demo key and placeholder words, fewer than 32 characters, repeated text, and text
    whose character statistics promise under 128 bits (a crude upper bound on entropy; random keys from
    ``labbot secret-key new`` or ``openssl rand -base64 32`` have about 200).
    """
    if key == DEMO_KEY:
        return _("is the published demo key")
    if _PLACEHOLDER.search(key):
        return _("looks like a placeholder")
    if len(key) < MIN_LENGTH:
        return _("is {len} characters; use at least {MIN_LENGTH} (e.g. `labbot secret-key new`)").format(
            len=len(key), MIN_LENGTH=MIN_LENGTH
        )
    for period in range(1, len(key) // 2 + 1):
        if all(key[i] == key[i % period] for i in range(len(key))):
            return _("is a repeated pattern")
    counts = Counter(key)
    per_char = -sum(n / len(key) * math.log2(n / len(key)) for n in counts.values())
    if len(counts) < 10 or per_char * len(key) < MIN_BITS:
        return _("has too little variety to be random (use `labbot secret-key new`)")
    return None


def require_strong_secret_key(settings: Settings) -> None:
    """Refuse a weak or placeholder LABBOT_SECRET_KEY: every command that opens a database holding lab secrets
    calls this (the demo, on its own throw-away database, does not)."""
    problem = secret_key_problem(settings.secret_key.get_secret_value())
    if problem is not None:
        raise ConfigError(
            _(
                "LABBOT_SECRET_KEY {problem}: it encrypts every lab's SSH key and passwords; "
                "`labbot secret-key new` prints a good one"
            ).format(problem=problem)
        )


class SecretBox:
    """Encrypts and decrypts short secrets with one process-wide key."""

    def __init__(self, secret_key: SecretStr) -> None:
        raw = secret_key.get_secret_value().encode()
        if len(raw) < 16:
            raise ConfigError(_("LABBOT_SECRET_KEY must be at least 16 characters"))
        self._key = raw
        self._legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"labbot-secretbox-v1:" + raw).digest()))

    def _fernet(self, salt: bytes) -> Fernet:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO).derive(self._key)
        return Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, plaintext: SecretStr) -> str:
        """Ciphertext (URL-safe text, format v2) of a secret."""
        salt = os.urandom(16)
        token = self._fernet(salt).encrypt(plaintext.get_secret_value().encode()).decode()
        return f"{V2}{base64.urlsafe_b64encode(salt).decode()}${token}"

    def decrypt(self, ciphertext: str) -> SecretStr:
        """The secret back; a wrong key is a configuration error, not a crash."""
        try:
            return SecretStr(self._open(ciphertext))
        except (InvalidToken, ValueError):
            raise ConfigError(_("cannot decrypt a stored secret: LABBOT_SECRET_KEY changed?")) from None

    def can_decrypt(self, ciphertext: str) -> bool:
        """Whether this key opens ``ciphertext`` (Fernet tokens are authenticated: a wrong key never 'works')."""
        try:
            self._open(ciphertext)
        except (InvalidToken, ValueError):
            return False
        return True

    @staticmethod
    def is_current(ciphertext: str) -> bool:
        """Whether ``ciphertext`` is in the current format."""
        return ciphertext.startswith(V2)

    def _open(self, ciphertext: str) -> str:
        if ciphertext.startswith(V2):
            salt, _, token = ciphertext[len(V2) :].partition("$")
            return self._fernet(base64.urlsafe_b64decode(salt)).decrypt(token.encode()).decode()
        return self._legacy.decrypt(ciphertext.encode()).decode()
