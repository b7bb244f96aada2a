"""Secrets at rest: AES-256-GCM with a key derived by HKDF-SHA256 from the configured key.

Shared by device credentials, TOTP and single sign-on secrets (encrypt/decrypt) and by
session recordings (recording_key); each purpose derives its own key from the same material.
"""
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

_VERSION = b"\x01"
_cache = {}


class SecretError(ValueError):
    """A stored secret cannot be decrypted with the configured key."""


def _key(info=b"device credentials"):
    """Derive (once per configured key and purpose) a 256-bit data key."""
    # The default purpose keeps its first name: renaming it would change the key of every stored secret.
    material = current_app.config.get("ENCRYPTION_KEY") or current_app.config["SECRET_KEY"]
    if (material, info) not in _cache:
        _cache[material, info] = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"gatehouse/secrets-at-rest/v1", info=info
        ).derive(material.encode())
    return _cache[material, info]


def recording_key():
    """Return the key of session recordings: from the same material as device secrets, its own purpose."""
    return _key(b"session recordings")


def encrypt(plaintext, purpose):
    """Encrypt text; purpose (e.g. "password") is bound as associated data."""
    if plaintext is None:
        return None
    nonce = os.urandom(12)
    return _VERSION + nonce + AESGCM(_key()).encrypt(nonce, plaintext.encode(), purpose.encode())


def decrypt(blob, purpose):
    """Decrypt what encrypt() produced, or raise SecretError."""
    if blob is None:
        return None
    if blob[:1] != _VERSION:
        raise SecretError("unknown secret format")
    try:
        return AESGCM(_key()).decrypt(blob[1:13], blob[13:], purpose.encode()).decode()
    except InvalidTag:
        raise SecretError("stored secret cannot be decrypted: was SECRET_KEY or ENCRYPTION_KEY changed?") from None
