"""The recorder: one terminal's output, resizes and input tokens, turned into asciicast lines and
written as chunks (app.recording.chunks) to a store, up to a size cap. No Flask here.

Commands are found on the recorded screen by a detector the terminal passes in (app.terminals.commands:
CommandDetector, and tokens, which reduces input to keys, Enter and Ctrl-C before it is queued), so
recording imports nothing of terminals. Without a detector nothing is found and input is not queued.
"""
import codecs
import collections
import contextlib
import hashlib
import json
import os
import time

from .chunks import LAST, MAGIC, chunk
from .store import write_all

CHUNK_BYTES = 1024 * 1024  # plaintext per chunk at most (about): bounds what a reader holds at once
FLUSH_BYTES = 256 * 1024  # buffered output that asks for a flush before the periodic one


class Recorder:
    """Tee of one terminal: output, resizes and (content-free) input go into a queue at almost no cost;
    flush() — run off the event loop — turns them into asciicast lines, command markers and chunks.

    output(), input() and resize() are called by the terminal's loops; flush() and finish() by one
    caller at a time (the owner serialises them). The queue is a deque: appends and pops are atomic.
    """

    def __init__(self, store, name, key, *, cols=80, rows=24, title="", term="xterm-256color",
                 max_bytes=100 * 1024 * 1024, clock=time.monotonic, started=None, detector=None, tokens=None):
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
        self.detector, self._tokens = detector, tokens
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
        kinds = self._tokens(data) if self.detector is not None else ()
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
            self._found(lines, last)
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

    def _found(self, lines, last):
        """Add the commands the detector settled on by now (all it holds when last)."""
        if self.detector is None:
            return
        for t, text in self.detector.settle(self.clock() - self.t0):
            self._marker(lines, t, text)
        if last:
            for t, text in self.detector.finish():
                self._marker(lines, t, text)

    def _event(self, lines, t, kind, value):
        """Turn one queued event into lines (and commands)."""
        detector = self.detector
        if kind == "o":
            for te, text in detector.output(value, t) if detector else ():
                self._marker(lines, te, text)
            text = self._decoder.decode(value)
            if text:
                self._line(lines, t, "o", text)
        elif kind == "i":
            act = {"k": detector.key, "e": detector.enter, "c": detector.cancel}
            for token in value:
                for te, text in act[token](t):
                    self._marker(lines, te, text)
        else:
            cols, rows = value
            if detector:
                detector.resize(cols, rows)
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
        stored = chunk(self.key, self.name, self._index, LAST if last else 0, plain)
        data = (MAGIC if self._index == 0 else b"") + stored
        try:
            write_all(self._file, data)
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
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):  # closing an unbuffered file has nothing left to lose
                handle.close()
