"""The chain's format, in one place: what a row's hash covers, what a checkpoint signs, and the key's forms.

Everything here works on plain JSON values and needs the standard library and `cryptography` alone, never
Flask or the database: the offline bundle checker (app/audit/bundle.py) imports it, and an auditor copies
the two files side by side. docs/audit.md, *The chain* and *Signed checkpoints*, documents these forms.
"""
import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# The columns a row's hash covers, in the order exports show them.
HASHED_FIELDS = ("id", "occurred_at", "actor", "user_id", "action", "outcome", "severity", "message", "source_ip",
                 "user_agent", "request_id", "target", "session_id", "details")
# A row as exports, archives and bundles hold it: the hashed fields and the two hashes.
ROW_FIELDS = HASHED_FIELDS + ("prev_hash", "hash")
# The details of an audit.checkpoint event, the fields of a checkpoint line.
CHECKPOINT_FIELDS = ("head_id", "head_hash", "signed_at", "key_id", "signature")

# What signature_fault() finds wrong with a signature.
WRONG_KEY, FORGED = "wrong key", "forged"


class BadKey(ValueError):
    """A signing or public key that cannot be read."""


def canonical(values):
    """Return the bytes a row's hash covers: its hashed fields as plain values (time in ISO form), sorted JSON."""
    body = {name: values.get(name) for name in HASHED_FIELDS}
    body["details"] = body["details"] or {}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link_hash(prev_hash, values):
    """Return sha256(prev_hash || canonical(values)) as hex: the hash a row with these plain values carries."""
    return hashlib.sha256(prev_hash.encode() + canonical(values)).hexdigest()


def json_lines(handle):
    """Yield (line number, object) of each non-blank line of a JSON Lines file; object is None if not a JSON one."""
    for number, raw in enumerate(handle, 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        yield number, line if isinstance(line, dict) else None


def checkpoint_bytes(head_id, head_hash, signed_at, key):
    """Return the bytes a checkpoint's signature covers."""
    return f"gatehouse-audit-checkpoint-v1\n{head_id}\n{head_hash}\n{signed_at}\n{key}\n".encode("utf-8")


def raw_public(public_key):
    """Return the 32 raw bytes of a public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_text(public_key):
    """Return a public key as base64 of its 32 raw bytes, the form `flask audit pubkey` prints."""
    return base64.b64encode(raw_public(public_key)).decode("ascii")


def key_id(public_key):
    """Return the first 16 hex digits of the SHA-256 of the raw public key."""
    return hashlib.sha256(raw_public(public_key)).hexdigest()[:16]


def parse_public_key(text):
    """Return the public key from base64 of 32 raw bytes or PEM, given as the text or a file's path; raise BadKey."""
    text = text.strip()
    if not text.startswith("-----BEGIN") and os.path.isfile(text):
        text = Path(text).read_text().strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
            if not isinstance(key, Ed25519PublicKey):
                raise BadKey("the public key is not an Ed25519 key")
            return key
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except BadKey:
        raise
    except ValueError as exc:
        raise BadKey(f"the public key is neither base64 of 32 bytes nor PEM: {exc}") from None


def signature_fault(public, claimed_key_id, signature, message):
    """Return WRONG_KEY if another key signed message, FORGED if the base64 signature fails, else None."""
    if claimed_key_id != key_id(public):
        return WRONG_KEY
    try:
        public.verify(base64.b64decode(str(signature), validate=True), message)
    except (InvalidSignature, ValueError):
        return FORGED
    return None
