"""Recordings are compressed at a faster level now; every recording reads alike whatever level wrote it: the one kept
from an earlier version (gzip level 6), one written now, and one whose chunks mix levels."""
import gzip
import hashlib
import json
import os
import struct
import uuid

from app.recording import chunks
from app.recording.chunks import LAST, MAGIC, check, iter_cast, scan
from app.recording.recorder import Recorder
from app.recording.store import LocalStore

KEY = bytes(range(32))
OLD = os.path.join(os.path.dirname(__file__), "data", "recording")
OLD_NAME = "0f3c2a5e-7b1d-4e2a-9c3b-5d6e7f809a1b"


def gzip_level(member):
    """Return the compression level a gzip member's header names (XFL: 2 slowest, 4 fastest, 0 other)."""
    return member[8]


def stored_members(store, name, key):
    """Return the decrypted (still compressed) members of a recording, in order."""
    aead = chunks._aead(key)
    with store.open(name) as handle:
        assert handle.read(len(MAGIC)) == MAGIC
        members = []
        while head := handle.read(5):
            length, flags = struct.unpack(">IB", head)
            body = handle.read(length)
            members.append(aead.decrypt(body[:12], body[12:], chunks._aad(name, len(members), flags)))
    return members


def test_the_kept_recording_of_level_6_still_replays_and_verifies():
    store = LocalStore(OLD)
    assert {gzip_level(m) for m in stored_members(store, OLD_NAME, KEY)} == {0}  # level 6 says "other"
    with open(os.path.join(OLD, OLD_NAME + ".cast"), "rb") as handle:
        cast = handle.read()
    with open(os.path.join(OLD, OLD_NAME + ".seal.json")) as handle:
        seal = json.load(handle)
    assert b"".join(iter_cast(store, OLD_NAME, KEY)) == cast
    assert check(store, OLD_NAME, KEY, seal) == ("verified", None)


def test_a_recording_written_now_is_level_1_and_reads_back(tmp_path):
    store, name = LocalStore(tmp_path), str(uuid.uuid4())
    recorder = Recorder(store, name, KEY, started=1796000000)
    text = "".join(f"line {i}: héllo wörld\r\n" for i in range(5000)).encode()
    recorder.output(text)
    seal = recorder.finish()
    assert {gzip_level(m) for m in stored_members(store, name, KEY)} == {4}  # XFL 4: the fastest level
    cast = b"".join(iter_cast(store, name, KEY))
    assert json.loads(cast.splitlines()[1])[2] == text.decode()
    assert check(store, name, KEY, seal) == ("verified", None)


def test_chunks_of_mixed_levels_read_as_one_recording(tmp_path):
    store, name = LocalStore(tmp_path), str(uuid.uuid4())
    lines = [b'{"version": 2, "width": 80, "height": 24}\n', b'[0.5, "o", "a"]\n', b'[1.0, "o", "b"]\n']
    aead = chunks._aead(KEY)
    with store.create(name) as handle:
        handle.write(MAGIC)
        for index, (line, level) in enumerate(zip(lines, (6, 1, 9))):
            flags = LAST if index == len(lines) - 1 else 0
            nonce = os.urandom(12)
            body = bytes([flags]) + nonce + aead.encrypt(nonce, gzip.compress(line, level, mtime=0),
                                                         chunks._aad(name, index, flags))
            handle.write(struct.pack(">I", len(body) - 1) + body)
    plain = b"".join(lines)
    assert b"".join(iter_cast(store, name, KEY)) == plain
    found = scan(store, name, KEY)
    assert (found.sha256, found.bytes, found.complete, found.error) == (hashlib.sha256(plain).hexdigest(),
                                                                        len(plain), True, None)
