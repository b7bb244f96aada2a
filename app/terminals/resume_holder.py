"""The holder's side of a resume relayed from another process (app.terminals.resume_relay has the serving side).

A RelayedSocket stands in for the browser's websocket: the live terminal resumes it, writes to it and serves it
exactly as a local socket (attach.py, live.py). What the terminal sends goes to the serving process in numbered
"resume-data" messages; what the serving process forwards (input, resize, pings: "resume-input", numbered) is taken
in order; a gap ends the resume rather than typing out of order. The serve loop runs on a thread (a greenlet under
gevent) of its own, started when the request comes: a part of the terminal, like its pump.
"""
import collections
import logging
import threading
import time
from datetime import datetime

from flask import current_app
from simple_websocket import ConnectionClosed

from app import cluster
from app.extensions import db

from . import registry
from .messages import control_message
from .relay_wire import pack, unpack, Sequence

log = logging.getLogger("gatehouse.terminals")

ABNORMAL, MOVED = 1006, 4001  # close codes: gone without a word (the session is kept), taken over by another window
INPUT_LOST = ("Some of what was typed was lost on the way to the server holding this session; reconnecting so "
              "nothing is typed out of order.")
GONE = "This session is no longer open here."

_sockets = {}  # relay id -> RelayedSocket


class RelayedSocket:
    """A browser's websocket reached through the serving process: send, receive, close as simple_websocket's."""

    def __init__(self, request):
        self.id, self.to = request["id"], request["reply"]
        self.request = request
        self.close_reason = None  # the browser's close code, once it closed
        self._inbox, self._outbox = collections.deque(), collections.deque()
        self._wake, self._lock = threading.Event(), threading.Lock()
        self._interrupted = False
        self.sequence = Sequence()
        self.event = self  # what registry._interrupt wakes: interrupt() below

    @property
    def connected(self):
        """Say whether the browser's side still stands."""
        return self.close_reason is None

    def send(self, data):
        """Queue a frame for the browser; the serve thread sends output on (the pump never waits for the bus), a
        control message (an end, a move, a resume) goes at once with what was queued before it."""
        if not self.connected:
            raise ConnectionClosed(self.close_reason)
        self._outbox.append(data)
        if isinstance(data, str):
            self.flush()
        self._wake.set()

    def receive(self, timeout=None):
        """Return the next frame the browser sent, or None after timeout; send what waits for the browser meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._wake.clear()  # before looking: a frame queued from now on wakes the wait below
            self.flush()
            if self._inbox:
                return self._inbox.popleft()
            if not self.connected:
                raise ConnectionClosed(self.close_reason)
            if self._interrupted or (deadline is not None and time.monotonic() >= deadline):
                self._interrupted = False
                return None
            self._wake.wait(0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic())))

    def interrupt(self):
        """End the serve loop's wait now with nothing received (an end was asked)."""
        self._interrupted = True
        self._wake.set()

    def close(self, code=1000, reason=None):
        """Close the browser's socket with code (4001: the session moved to another window)."""
        if self.close_reason is None:
            self.close_reason = code
        self._wake.set()

    def flush(self):
        """Send the frames queued for the browser, NOTIFY-sized and numbered; a beat when quiet."""
        with self._lock:
            frames = [self._outbox.popleft() for _ in range(len(self._outbox))]
            for items in pack(frames):
                self._post("resume-data", items=items)
            if self.sequence.beat_due():
                self._post("resume-data", items=[])
            if self.connected and self.sequence.silent():
                log.info("resume of session %s: the serving process %s went quiet", self.request["session"], self.to)
                self.close(ABNORMAL)  # the browser's server went away: the session is kept, as for a lost network

    def _post(self, kind, **fields):
        """Send one numbered message to the serving process."""
        cluster.send(self.to, {"kind": kind, "id": self.id, "seq": self.sequence.next(), **fields})

    def take(self, message):
        """Take one message of the serving process (on the bus's thread): input in order, a beat or the close."""
        kind = message.get("kind")
        if not self.connected:
            return  # closed already: what still comes is not typed
        if kind != "resume-input":
            self.sequence.heard = time.monotonic()  # an input's number is checked (and its time noted) below
        if kind == "resume-input":
            if not self.sequence.take(message.get("seq")):
                self._outbox.append(control_message("status", INPUT_LOST, reason="relay_gap"))
                self.close(ABNORMAL)
                return
            self._inbox.extend(unpack(message.get("items")))
        elif kind == "resume-close":
            self.close(message.get("code") or ABNORMAL)
        self._wake.set()

    def finish(self):
        """Send what is left and say the browser's socket closes, with its code; forget the relay."""
        _sockets.pop(self.id, None)
        self.flush()
        with self._lock:
            self._post("resume-end", code=self.close_reason or 1000)


def on_message(message):
    """Handle a resume message sent to this process as the session's holder."""
    kind = message.get("kind", "")
    if kind == "resume":
        begin(message)
    elif kind == "resume-windows":
        windows = {s: getattr(registry.find(s), "window", None) for s in message.get("sessions", ())}
        cluster.send(message["reply"], {"kind": "resume-windows-answer", "q": message.get("q"), "windows": windows})
    elif kind in ("resume-input", "resume-close", "resume-beat") and message.get("id") in _sockets:
        _sockets[message["id"]].take(message)


def begin(request):
    """Start serving a relayed resume on a thread of its own (its input may come before it runs)."""
    socket = RelayedSocket(request)
    _sockets[socket.id] = socket
    app = current_app._get_current_object()
    threading.Thread(target=_serve, args=(app, socket), daemon=True, name="resume-relay").start()


def _serve(app, socket):
    """Resume the terminal the request names with the relayed socket, and serve it until it goes."""
    request = socket.request
    with app.app_context():
        try:
            terminal = registry.find(request["session"])
            if terminal is None or terminal.user.id != request.get("user"):
                socket.send(control_message("closed", GONE, reason="gone"))
                return
            log.info("resuming session %s for a browser served by %s", request["session"], socket.to)
            expires = request.get("login_expires")
            login = request.get("login"), datetime.fromisoformat(expires) if expires else None
            terminal.resume(socket, login, tuple(request["source"]), request.get("offset") or 0,
                            request.get("window"), recorded=False)  # the serving process recorded it
            terminal.serve(socket)
        except Exception:
            log.exception("serving a relayed resume of session %s", request.get("session"))
            _let_go(socket)
        finally:
            socket.finish()
            db.session.remove()


def _let_go(socket):
    """After a failure, close the relayed socket and leave its terminal detached (kept for a resume), not attached
    to a socket nobody serves."""
    socket.close(ABNORMAL)
    terminal = registry.find(socket.request["session"])
    if terminal is not None and terminal.websocket is socket:
        try:
            terminal.detach(socket, ABNORMAL)
        except Exception:  # the trail or the database is down: the terminal is detached all the same
            log.exception("detaching session %s", socket.request["session"])
