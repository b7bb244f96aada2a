"""Resuming a session another process or node holds: the serving process relays the browser to the holder.

The serving process (the one the resume socket reached) checks who may resume as for a local session
(app.terminals.resuming), records session.resumed in the browser's own request (its address and user agent: the one
writer of that event) and sends a "resume" request to the holder's inbox (app.cluster). The holder resumes its live
terminal with a stand-in socket (app.terminals.resume_holder) and streams what it sends back in numbered
"resume-data" messages; the browser's input, resizes and pings go the other way in numbered "resume-input"
messages. Each side beats every BEAT seconds and gives up after SILENCE: a holder that died ends the browser's socket
with the words a restart gives, a serving process that died leaves the session detached, kept for a resume.
"""
import collections
import json
import logging
import threading
import time
import uuid

from simple_websocket import ConnectionClosed

from app import cluster
from app.dbtypes import now_utc
from app.leases import worker_id

from . import resume_holder, session_events
from .messages import END_MESSAGES, control_message
from .relay_wire import Sequence, pack, unpack
from .session_events import SessionMetadata

log = logging.getLogger("gatehouse.terminals")

HOLDER_GONE = END_MESSAGES["server_restart"]  # what a local restart says; the holder went quiet
OUTPUT_LOST = "Some output was lost on the way from the server holding this session; reconnecting."
ASK_SECONDS = 1.0  # how long the open-sessions list waits for holders to say which window has their sessions
_resumes = {}  # relay id -> RemoteSession (serving process)
_asks = {}  # question id -> (event, answers) of open-sessions lists waiting for holders


def init_app(app):
    """Take resume messages from this process's inbox (as a serving process and as a holder)."""
    cluster.subscribe(cluster.INBOX, on_message)
    cluster.subscribe(cluster.INBOX, resume_holder.on_message)


class RemoteSession:
    """The serving process's side of one relayed resume: resume(), resize_to() and serve() as a LiveTerminal's."""

    def __init__(self, row):
        self.id, self.session_id, self.holder, self.user_id = uuid.uuid4().hex, row.id, row.worker, row.user_id
        self.metadata = SessionMetadata.of(row)
        self.gone_for = max(0.0, (now_utc() - row.detached_at).total_seconds()) if row.detached_at else None
        self.taken_over = row.detached_at is None
        self.sequence = Sequence()
        self._out, self._wake = collections.deque(), threading.Event()
        self.end_code = None  # set when the holder said the browser's socket closes

    def resume(self, websocket, login, source, offset, window):
        """Record the resume here, then ask the holder to attach this browser (raises AuditWriteError)."""
        session_events.resumed(self.metadata, source, self.gone_for, taken_over=self.taken_over)
        _resumes[self.id] = self
        log.info("asking %s to relay a resume of session %s", self.holder, self.session_id)
        login_id, expires = login
        sent = cluster.send(self.holder, {
            "kind": "resume", "id": self.id, "session": self.session_id, "user": self.user_id, "reply": worker_id(),
            "login": login_id, "login_expires": expires.isoformat() if expires else None, "offset": offset,
            "window": window, "source": list(source)})
        if not sent:
            self.lost()

    def resize_to(self, size):
        """Forward the browser's size, as the page's own resize message."""
        self.forward([json.dumps({"type": "resize", "cols": size[0], "rows": size[1]})])

    def forward(self, frames):
        """Send the browser's frames to the holder, in numbered messages."""
        for items in pack(frames):
            cluster.send(self.holder, {"kind": "resume-input", "id": self.id, "seq": self.sequence.next(),
                                       "items": items})

    def take(self, message):
        """Take one message of the holder (on the bus's thread): frames for the browser, a beat, or the end."""
        if self.end_code is not None:
            return  # ended already (a gap, a quiet holder): what still comes is not shown
        if not self.sequence.take(message.get("seq")):
            log.warning("resume of session %s: a message from %s was lost", self.session_id, self.holder)
            self.gap()
            return
        self._out.extend(unpack(message.get("items")))
        if message.get("kind") == "resume-end":
            self.end_code = message.get("code") or 1000
        self._wake.set()

    def gap(self):
        """Output was lost on the way: detach at the holder and close, so the page resumes from what it has."""
        cluster.send(self.holder, {"kind": "resume-close", "id": self.id, "code": 1006})
        self._out.append(control_message("status", OUTPUT_LOST, reason="relay_gap"))
        self.end_code = 1011
        self._wake.set()

    def lost(self):
        """The holder went quiet or its messages were lost: say so as a local restart does, and close."""
        self._out.append(control_message("closed", HOLDER_GONE, reason="server_restart"))
        self.end_code = 1011
        self._wake.set()

    def serve(self, websocket):
        """Pass frames both ways until the browser or the holder ends the resume."""
        writer = threading.Thread(target=self._write, args=(websocket,), daemon=True, name="resume-writer")
        writer.start()
        try:
            self._read(websocket)
        finally:
            _resumes.pop(self.id, None)
            self._wake.set()
            writer.join(5)

    def _read(self, websocket):
        """Forward what the browser sends; tell the holder when it closes; beat, and notice a quiet holder."""
        while self.end_code is None:
            try:
                frame = websocket.receive(timeout=1)
            except ConnectionClosed:
                if self.end_code is None:
                    cluster.send(self.holder, {"kind": "resume-close", "id": self.id,
                                               "code": websocket.close_reason or 1006})
                return
            if frame is not None:
                self.forward([frame])
            elif self.sequence.silent():
                self.lost()
            elif self.sequence.beat_due():
                self.sequence.sent = time.monotonic()
                cluster.send(self.holder, {"kind": "resume-beat", "id": self.id})

    def _write(self, websocket):
        """Send the holder's frames to the browser as they come; close the browser's socket at the end."""
        try:
            while True:
                self._wake.wait(1.0)
                self._wake.clear()
                while self._out:
                    websocket.send(self._out.popleft())
                if self.end_code is not None:
                    websocket.close(self.end_code if self.end_code != 1006 else 1011)
                    return
                if self.id not in _resumes:
                    return
        except (ConnectionClosed, OSError):
            pass


def on_message(message):
    """Handle a message for a resume this process serves, or a holder's answer about windows."""
    kind = message.get("kind", "")
    if kind in ("resume-data", "resume-end") and message.get("id") in _resumes:
        _resumes[message["id"]].take(message)
    elif kind == "resume-windows-answer" and message.get("q") in _asks:
        event, answers = _asks[message["q"]]
        answers.update(message.get("windows") or {})
        answers.setdefault("#answered", 0)
        answers["#answered"] += 1
        if answers["#answered"] >= answers.get("#asked", 0):
            event.set()


def windows_of(rows):
    """Return {session id: the browser window attached to it} for sessions held by other reachable processes
    (asked of their holders, waiting at most ASK_SECONDS); sessions whose holder did not answer are left out."""
    holders = collections.defaultdict(list)
    for row in rows:
        if row.worker != worker_id() and cluster.reaches(row.worker):
            holders[row.worker].append(row.id)
    if not holders:
        return {}
    q, event = uuid.uuid4().hex, threading.Event()
    answers = {"#asked": len(holders)}
    _asks[q] = event, answers
    try:
        for holder, ids in holders.items():
            cluster.send(holder, {"kind": "resume-windows", "q": q, "sessions": ids, "reply": worker_id()})
        event.wait(ASK_SECONDS)
    finally:
        _asks.pop(q, None)
    return {k: v for k, v in answers.items() if not k.startswith("#")}
