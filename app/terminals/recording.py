"""Session recordings: asciicast v2, written as it happens, gzip in chunks, each chunk AES-256-GCM; no Flask here.

One file per session, `<session id>.rec`, in a store (a local folder now):

    MAGIC, then chunks: length (4 bytes, big-endian, of what follows) | flags (1: last) | nonce (12) | ciphertext

A chunk's plaintext is a gzip member of whole asciicast lines; the members in order are the recording
(the .cast file a player reads). The associated data binds a chunk to its session, its place and its
flags, so chunks cannot be reordered, moved between recordings, or a cut-off file passed off as whole.
The seal is the SHA-256 and size of that plaintext, written into the session's end event.
"""
import codecs
import collections
import gzip
import hashlib
import json
import os
import re
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .commands import CommandDetector, tokens

MAGIC = b"GHREC1\n"
LAST = 1
CHUNK_BYTES = 1024 * 1024  # plaintext per chunk at most (about): bounds what a reader holds at once
FLUSH_BYTES = 256 * 1024  # buffered output that asks for a flush before the periodic one
_HEAD = struct.Struct(">IB")
_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SUFFIX = ".rec"


class RecordingError(Exception):
    """A recording cannot be written or read."""


class CutOff(RecordingError):
    """A recording ends inside a chunk (a torn write, or a file cut short)."""


class LocalStore:
    """Recordings as files in one private folder (0700, files 0600); an object store can take its place."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, name):
        """Return the file of a recording; only session ids are names (no path tricks)."""
        if not _NAME.match(name or ""):
            raise RecordingError(f"not a recording name: {name!r}")
        return self.root / (name + _SUFFIX)

    def check(self):
        """Make sure the folder exists and takes files, or raise RecordingError saying why."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe = self.root / f".probe-{os.getpid()}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            probe.unlink()
        except OSError as exc:
            raise RecordingError(f"the recordings folder {self.root} is not writable: {exc.strerror or exc}") from None

    def create(self, name):
        """Create a new recording file for appending (never an existing one)."""
        self.check()
        try:
            fd = os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            raise RecordingError(f"cannot create recording {name}: {exc.strerror or exc}") from None
        return os.fdopen(fd, "ab", buffering=0)

    def reopen(self, name):
        """Open an existing recording for repair (read and write)."""
        return open(self.path(name), "r+b", buffering=0)

    def open(self, name):
        """Open a recording for reading, or return None when there is none."""
        try:
            return open(self.path(name), "rb")
        except FileNotFoundError:
            return None

    def size(self, name):
        """Return the stored size in bytes, or None when there is none."""
        try:
            return self.path(name).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, name):
        """Delete a recording; say whether there was one."""
        try:
            self.path(name).unlink()
            return True
        except FileNotFoundError:
            return False

    def names(self):
        """Return the names of the stored recordings."""
        if not self.root.is_dir():
            return []
        return sorted(p.name[:-len(_SUFFIX)] for p in self.root.iterdir()
                      if p.name.endswith(_SUFFIX) and _NAME.match(p.name[:-len(_SUFFIX)]))


def _write_all(handle, data):
    """Write all of data to an unbuffered file: a full disk may take part of it first, then raise."""
    view = memoryview(data)
    while view:
        view = view[handle.write(view):]


def _aad(name, index, flags):
    """Return what a chunk's tag covers besides its bytes: the file format, its session, place and flags."""
    return MAGIC + name.encode() + struct.pack(">QB", index, flags)


def _chunk(key, name, index, flags, plaintext):
    """Return one stored chunk: compressed, encrypted, framed."""
    nonce = os.urandom(12)
    body = bytes([flags]) + nonce + AESGCM(key).encrypt(nonce, gzip.compress(plaintext, 6, mtime=0),
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
            plain = gzip.decompress(AESGCM(key).decrypt(body[:12], body[12:], _aad(name, index, flags)))
        except (InvalidTag, OSError, EOFError, zlib.error):
            raise RecordingError(f"chunk {index} does not decrypt: altered, or another key") from None
        yield plain, bool(flags & LAST)
        index += 1


def scan(store, name, key):
    """Read a whole recording and return its hash, size and state; None when there is no file."""
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
        with store.reopen(name) as handle:
            handle.truncate(found.good_length)
            handle.seek(found.good_length)
            _write_all(handle, (b"" if found.good_length else MAGIC) + _chunk(key, name, found.chunks, LAST, b""))
            os.fsync(handle.fileno())
    return {"sha256": found.sha256, "bytes": found.bytes, "state": state}


class Recorder:
    """Tee of one terminal: output, resizes and (content-free) input go into a queue at almost no cost;
    flush() — run off the event loop — turns them into asciicast lines, command markers and chunks.

    output(), input() and resize() are called by the terminal's loops; flush() and finish() by one
    caller at a time (the owner serialises them). The queue is a deque: appends and pops are atomic.
    """

    def __init__(self, store, name, key, *, cols=80, rows=24, title="", term="xterm-256color",
                 max_bytes=100 * 1024 * 1024, clock=time.monotonic, started=None):
        self.store, self.name, self.key = store, name, key
        self.cols, self.rows, self.title, self.term = cols, rows, title, term
        self.max_bytes = max_bytes
        self.clock = clock
        self.t0 = clock()
        self.started = started if started is not None else time.time()
        self.state = "recording"  # then complete, limited (size cap) or failed (cannot write)
        self.error = None
        self.size = 0
        self.commands = collections.deque()  # (offset in seconds, text) for the database
        self.detector = CommandDetector(cols, rows)
        self._events = collections.deque()
        self._queued = 0  # output bytes queued (written by the terminal's loops only)
        self._taken = 0  # output bytes flushed (written by flush only)
        self._digest = hashlib.sha256()
        self._index = 0
        self._last_t = 0.0
        self._header = False
        self._unwritten = 0  # bytes of lines made but not yet written
        self._length = 0  # bytes of whole chunks in the file
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._file = store.create(name)
        self.flush()  # the header at once: a recording is readable (and watchable) from its first moment

    @property
    def buffered(self):
        """Return how many output bytes wait for a flush."""
        return self._queued - self._taken

    def output(self, data):
        """Queue remote output (the hot path: one append)."""
        self._events.append((self.clock() - self.t0, "o", data))
        self._queued += len(data)

    def input(self, data):
        """Queue what input means for commands (keys, Enter, Ctrl-C), never its content."""
        kinds = tokens(data)
        if kinds:
            self._events.append((self.clock() - self.t0, "i", kinds))

    def resize(self, cols, rows):
        """Queue a terminal size change."""
        self._events.append((self.clock() - self.t0, "r", (cols, rows)))

    def flush(self, last=False):
        """Write what is queued as one or more chunks; CPU work, run it off the event loop."""
        lines = []
        for _ in range(len(self._events)):
            t, kind, value = self._events.popleft()
            if kind == "o":
                self._taken += len(value)
            if self.state != "recording":
                continue
            self._event(lines, t, kind, value)
            if self._unwritten >= CHUNK_BYTES:
                self._write(lines)
                lines = []
        if self.state == "recording":
            for t, text in self.detector.settle(self.clock() - self.t0):
                self._marker(lines, t, text)
            if last:
                for t, text in self.detector.finish():
                    self._marker(lines, t, text)
        if lines or last or not self._header:
            self._write(lines, last=last)

    def finish(self):
        """Flush the rest, mark the last chunk and close the file; return the seal for the end event."""
        if self._file is not None:
            self.flush(last=True)
            self._close()
        if self.state == "recording":
            self.state = "complete"
        seal = {"sha256": self._digest.hexdigest(), "bytes": self.size, "state": self.state}
        if self.error:
            seal["error"] = self.error
        return seal

    def _event(self, lines, t, kind, value):
        """Turn one queued event into lines (and commands)."""
        if kind == "o":
            for te, text in self.detector.output(value, t):
                self._marker(lines, te, text)
            text = self._decoder.decode(value)
            if text:
                self._line(lines, t, "o", text)
        elif kind == "i":
            act = {"k": self.detector.key, "e": self.detector.enter, "c": self.detector.cancel}
            for token in value:
                for te, text in act[token](t):
                    self._marker(lines, te, text)
        else:
            cols, rows = value
            self.detector.resize(cols, rows)
            self._line(lines, t, "r", f"{cols}x{rows}")

    def _marker(self, lines, t, text):
        """Add a command marker and remember the command for the database."""
        t = max(t, self._last_t)
        if self._line(lines, t, "m", text):
            self.commands.append((round(t, 6), text))

    def _line(self, lines, t, kind, data):
        """Add one asciicast event line; past the size cap add the stop marker instead. Say whether it went in."""
        if self.state != "recording":
            return False
        self._last_t = max(t, self._last_t)
        line = (json.dumps([round(t, 6), kind, data], ensure_ascii=False) + "\n").encode()
        if self.size + self._unwritten + len(line) > self.max_bytes:
            mb = self.max_bytes / 1024 / 1024
            line = (json.dumps([round(t, 6), "m", f"recording stopped: it reached RECORDING_MAX_MB ({mb:g} MB)"])
                    + "\n").encode()
            self.state = "limited"
        lines.append(line)
        self._unwritten += len(line)
        return self.state == "recording"

    def _header_line(self):
        """Return the asciicast v2 header."""
        return (json.dumps({"version": 2, "width": self.cols, "height": self.rows, "timestamp": int(self.started),
                            "title": self.title, "env": {"TERM": self.term}}, ensure_ascii=False) + "\n").encode()

    def _write(self, lines, last=False):
        """Encrypt and append one chunk; a write that fails stops the recording (state failed)."""
        if self._file is None:
            return
        if not self._header:
            lines.insert(0, self._header_line())
        plain = b"".join(lines)
        self._unwritten = 0
        chunk = _chunk(self.key, self.name, self._index, LAST if last else 0, plain)
        data = (MAGIC if self._index == 0 else b"") + chunk
        try:
            _write_all(self._file, data)
        except OSError as exc:
            self.state, self.error = "failed", f"cannot write the recording: {exc.strerror or exc}"
            try:  # leave whole chunks only, so what was kept still matches the seal
                os.ftruncate(self._file.fileno(), self._length)
            except OSError:
                pass
            self._close()
            return
        self._length += len(data)
        self._header = True
        self._index += 1
        self._digest.update(plain)
        self.size += len(plain)

    def _close(self):
        """Close the file (once)."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
