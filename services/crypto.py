"""Encryption of the secrets labbot must keep (per-lab SSH private keys, host passwords).

Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from ``LABBOT_SECRET_KEY``; the database only ever holds
ciphertext, so a leaked database file does not leak a way into the labs.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from services.errors import ConfigError


class SecretBox:
    """Encrypts and decrypts short secrets with one process-wide key."""

    def __init__(self, secret_key: SecretStr) -> None:
        raw = secret_key.get_secret_value().encode()
        if len(raw) < 16:
            raise ConfigError("LABBOT_SECRET_KEY must be at least 16 characters")
        digest = hashlib.sha256(b"labbot-secretbox-v1:" + raw).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, plaintext: SecretStr) -> str:
        """Ciphertext (URL-safe text) of a secret."""
        return self._fernet.encrypt(plaintext.get_secret_value().encode()).decode()

    def decrypt(self, ciphertext: str) -> SecretStr:
        """The secret back; a wrong key is a configuration error, not a crash."""
        try:
            return SecretStr(self._fernet.decrypt(ciphertext.encode()).decode())
        except InvalidToken:
            raise ConfigError("cannot decrypt a stored secret: LABBOT_SECRET_KEY changed?") from None
