"""The recording file format: asciicast v2, gzip in chunks, each chunk AES-256-GCM. No Flask here.

One recording per session, named by its session id, in a store (app.recording.store): a file
`<session id>.rec` on disk, or the same bytes in parts in an object store:

    MAGIC, then chunks: length (4 bytes, big-endian, of what follows) | flags (1: last) | nonce (12) | ciphertext

A chunk's plaintext is a gzip member of whole asciicast lines (any compression level reads alike: writers before
this one used 6, this one uses LEVEL); the members in order are the recording
(the .cast file a player reads). The associated data binds a chunk to its session, its place and its
flags, so chunks cannot be reordered, moved between recordings, or a cut-off file passed off as whole.
The seal is the SHA-256 and size of that plaintext, written into the session's end event.
Recordings already sealed in trails must keep reading: this format does not change.
"""
import functools
import gzip
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .store import RecordingError

MAGIC = b"GHREC1\n"
LAST = 1
# gzip level of new chunks: 1 compresses terminal text ~3.5 times faster than 6 for ~25 % more bytes, and
# compression is most of a recording's CPU under bulk output.
LEVEL = 1
_HEAD = struct.Struct(">IB")


class CutOff(RecordingError):
    """A recording ends inside a chunk (a torn write, or a file cut short)."""


def _aad(name, index, flags):
    """Return what a chunk's tag covers besides its bytes: the file format, its session, place and flags."""
    return MAGIC + name.encode() + struct.pack(">QB", index, flags)


@functools.lru_cache(maxsize=64)
def _aead(key):
    """Return the AES-GCM cipher of a key, made once (a recording writes a chunk each second with it)."""
    return AESGCM(key)


def chunk(key, name, index, flags, plaintext):
    """Return one stored chunk: compressed, encrypted, framed."""
    nonce = os.urandom(12)
    body = bytes([flags]) + nonce + _aead(key).encrypt(nonce, gzip.compress(plaintext, LEVEL, mtime=0),
                                                       _aad(name, index, flags))
    return struct.pack(">I", len(body) - 1) + body


@dataclass
class Scan:
    """What reading a stored recording found."""

    sha256: str
    bytes: int
    complete: bool  # the last chunk is marked as the last
    good_length: int  # file offset after the last chunk that decrypted (0: not even the header)
    chunks: int  # chunks that decrypted
    error: str | None = None  # why reading stopped early (a torn end, an altered chunk)
    cut: bool = False  # reading stopped inside a chunk: the file ends early


def read_chunks(handle, key, name):
    """Yield the plaintext of each chunk in order; raise RecordingError on an altered or cut chunk."""
    if handle.read(len(MAGIC)) != MAGIC:
        raise RecordingError("not a recording (bad header)")
    index = 0
    while True:
        head = handle.read(_HEAD.size)
        if not head:
            return
        if len(head) < _HEAD.size:
            raise CutOff(f"chunk {index} is cut off")
        length, flags = _HEAD.unpack(head)
        body = handle.read(length)
        if len(body) < length:
            raise CutOff(f"chunk {index} is cut off")
        try:
            plain = gzip.decompress(_aead(key).decrypt(body[:12], body[12:], _aad(name, index, flags)))
        except (InvalidTag, OSError, EOFError, zlib.error):
            raise RecordingError(f"chunk {index} does not decrypt: altered, or another key") from None
        yield plain, bool(flags & LAST)
        index += 1


def scan(store, name, key):
    """Read a whole recording and return its hash, size and state; None when there is none."""
    handle = store.open(name)
    if handle is None:
        return None
    digest, size, complete, good, chunks, error, cut = hashlib.sha256(), 0, False, 0, 0, None, False
    with handle:
        try:
            for plain, last in read_chunks(handle, key, name):
                if complete:
                    raise RecordingError("data after the last chunk")
                digest.update(plain)
                size += len(plain)
                complete = last
                chunks += 1
                good = handle.tell()
            good = handle.tell()
        except RecordingError as exc:
            error = str(exc)
            good = good or (len(MAGIC) if chunks else 0)
            cut = isinstance(exc, CutOff)
    return Scan(digest.hexdigest(), size, complete, good, chunks, error, cut)


def iter_cast(store, name, key):
    """Yield the plaintext asciicast piece by piece (for a player or a download)."""
    handle = store.open(name)
    if handle is None:
        raise RecordingError("the recording is missing")
    with handle:
        for plain, _ in read_chunks(handle, key, name):
            yield plain


def check(store, name, key, seal):
    """Compare a stored recording with its seal: verified, altered, truncated or missing."""
    found = scan(store, name, key)
    if found is None:
        return "missing", "no recording file"
    same = found.sha256 == seal.get("sha256") and found.bytes == seal.get("bytes")
    if same and found.error is None and (found.complete or seal.get("state") != "complete"):
        return "verified", None
    if found.cut or (found.error is None and (same or found.bytes < (seal.get("bytes") or 0))):
        return "truncated", found.error or f"{found.bytes} of {seal.get('bytes')} bytes, no end mark"
    return "altered", found.error or "content does not match its seal"


def recover(store, name, key, state="interrupted"):
    """Repair a recording its writer left open (a killed process): keep whole chunks, mark the end; return the seal."""
    found = scan(store, name, key)
    if found is None:
        return None
    if not found.complete:
        store.repair(name, found.good_length,
                     (b"" if found.good_length else MAGIC) + chunk(key, name, found.chunks, LAST, b""))
    return {"sha256": found.sha256, "bytes": found.bytes, "state": state}
