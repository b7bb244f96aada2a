"""Browsers come and go, the SSH session stays: detach, the output kept meanwhile, and resume.

A terminal's browser side may go away without a close (network lost, page reloaded, laptop asleep): the
terminal is then detached, its output still read, recorded and kept (the last TERMINAL_RESUME_BUFFER_KB),
and its owner may resume it from any tab or browser for TERMINAL_RESUME_SECONDS; after that it ends as
`disconnected`. A resume sends the output the browser missed (from the byte offset it had), or the kept
output after a reset when the browser has nothing (a reload). Attachable is that part of LiveTerminal.
"""
import collections
import time

from simple_websocket import ConnectionClosed

from app.dbtypes import now_utc

from . import session_events, session_rows

# A resume from a page with nothing on screen replays the kept output from its first line break this near its start.
_LINE_START_WITHIN = 4096


class OutputLog:
    """The last output of a session with its byte offsets: what a browser coming back has missed."""

    def __init__(self, limit):
        self.limit = limit
        self._chunks = collections.deque()
        self.start = self.end = self._size = 0  # offsets of the first kept byte and of the next byte

    def append(self, data):
        """Keep output; forget the oldest beyond the limit."""
        self._chunks.append(data)
        self._size += len(data)
        self.end += len(data)
        while self._size > self.limit:
            extra, oldest = self._size - self.limit, self._chunks[0]
            if len(oldest) <= extra:
                self._chunks.popleft()
            else:
                self._chunks[0] = oldest[extra:]
            cut = min(extra, len(oldest))
            self._size -= cut
            self.start += cut

    def since(self, offset):
        """Return the output from offset on, or None when it is not kept any more (or never was)."""
        if not self.start <= offset <= self.end:
            return None
        return b"".join(self._chunks)[offset - self.start:]

    def replay(self):
        """Return (offset, bytes) for a browser with an empty screen: the kept output from a line's start."""
        data = b"".join(self._chunks)
        cut = data.find(b"\n", 0, _LINE_START_WITHIN) + 1 if self.start else 0
        return self.start + cut, data[cut:]


class Attachable:
    """The attach part of a live terminal: needs websocket, bridge, metadata, config, _send_lock, tell(), close()."""

    def __init__(self, config):
        self.output_log = OutputLog(config["TERMINAL_RESUME_BUFFER_KB"] * 1024)
        self.resume_seconds = config["TERMINAL_RESUME_SECONDS"]
        self.detached_at = None  # monotonic time of the detach, None while a browser is attached
        self.window = None  # the browser window attached now (the page's own id), so a reload finds its tabs

    def deliver(self, data):
        """Keep output for a resume and send it to the attached browser, if any (the pump never stops for it)."""
        with self._send_lock:
            self.output_log.append(data)
            websocket = self.websocket
            if websocket is None:
                return
            try:
                websocket.send(data)
            except (ConnectionClosed, OSError):
                pass  # the receive loop sees the socket gone and detaches

    def detach(self, websocket, code):
        """The browser went away without a close: keep the session for its owner to resume; say so in the trail."""
        with self._send_lock:
            if self.websocket is not websocket:
                return  # another browser took it over already
            self.websocket = None
            self.detached_at = time.monotonic()
        session_rows.set_detached(self.metadata.id, now_utc())
        session_events.detached(self.metadata, code, self.resume_seconds)

    def detached_for(self):
        """Return the seconds since the detach, or None while attached."""
        at = self.detached_at
        return None if at is None else time.monotonic() - at

    def resume_due(self):
        """Say whether a detached terminal must close now: its time ran out or its SSH side ended."""
        age = self.detached_for()
        return age is not None and (age >= self.resume_seconds or self.bridge.closed.is_set())

    def resume(self, websocket, login, source, offset, window, recorded=True):
        """Attach a browser of the owner (its log-in's (id, expiry), its (address, user agent)): send what it
        missed, take over from another browser, and follow the log-in from now on. A resume relayed from another
        process (recorded=False) was recorded there, in the browser's own request (app.terminals.resume_relay)."""
        previous, gone_for = self.websocket, self.detached_for()
        if recorded:  # first: nobody reaches a session unrecorded (AuditWriteError refuses the resume)
            session_events.resumed(self.metadata, source, gone_for, taken_over=previous is not None)
        with self._send_lock:
            self.websocket, self.detached_at, self.window = websocket, None, window
            missed = self.output_log.since(offset) if offset else None
            reset = missed is None
            start, missed = self.output_log.replay() if reset else (offset, missed)
            try:
                websocket.send(self._resumed_message(start, reset))
                if missed:
                    websocket.send(missed)
            except (ConnectionClosed, OSError):
                pass  # gone again already: serve() finds out and detaches
        if previous is not None:
            _let_go(previous)
        self.login_id, self.login_expires = login
        session_rows.set_resumed(self.metadata.id, self.login_id)

    def _resumed_message(self, offset, reset):
        """Return the `resumed` control message: where the output that follows starts, and whether to clear first."""
        return self.control_message("resumed", session=self.metadata.id, offset=offset, reset=reset,
                                    host_key=self.bridge.host_fingerprint, host_key_type=self.bridge.host_key_type,
                                    resume_seconds=self.resume_seconds)


def _let_go(websocket):
    """Tell a browser its session moved to another window, and close its socket (its tab does not come back)."""
    try:
        websocket.send('{"type": "moved", "message": "This session was resumed in another window."}')
        websocket.close(4001, "resumed elsewhere")
    except (ConnectionClosed, OSError):
        pass
