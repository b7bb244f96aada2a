"""Watching a session another process or node holds: the holder streams the watch over the cluster bus.

The serving process (the one the watch socket reached) finds the session's row open under another process's name,
records session.watch_started in the watcher's own request (their name, address and browser, as for a local watch)
and sends a "watch" request to the holder's inbox (app.cluster). The holder attaches a Watcher to the terminal like a
local one (first screen, then live output, its tab says who watches) and its relay loop, a continuous job, sends
what the watcher queues to the serving process in NOTIFY-sized, numbered "watch-data" messages; there a RemoteWatch
feeds a local Watcher, whose loop writes the socket exactly as for a local watch. Each side beats every BEAT seconds
and gives up after SILENCE: a holder that died ends the watch ("holder_lost"), a serving process that died frees the
holder's watcher. The serving process keeps checking its watcher's log-in each second (check()) and at once on a
log-in ended anywhere; it records session.watch_ended with the reason, whichever side ended the watch.
"""
import collections
import json
import logging
import threading
import time
import uuid
from contextlib import contextmanager

from app import cluster
from app.audit.events import AuditWriteError
from app.extensions import db
from app.leases import worker_id

from . import registry, session_events
from .models import TerminalSession
from .relay_wire import BEAT, BUDGET, SILENCE, unpack
from .relay_wire import pack as _messages
from .session_events import SessionMetadata
from .watchers import end_refused, record_watch_end, stop
from .watching import Watcher

log = logging.getLogger("gatehouse.terminals")

BURST = 64  # messages one relay sends per step before the others get their turn
HOLDER_LOST = "The server holding this session stopped answering; watching stopped."
AUDIT_REFUSES = "The audit trail cannot be written; watching is refused."
NOT_REACHED = ("This session is held by another Gatehouse process that this one cannot reach (it ended, or "
               "several processes share an SQLite database); watching it here is not possible.")

_wake = threading.Event()  # set by every relayed watcher's output and end: wakes the relay loop
_pending = collections.deque()  # watch requests the relay loop has not served yet (holder)
_relays = {}  # watch id -> Relay (holder)
_left = collections.deque(maxlen=256)  # watches whose serving process said they ended before the relay began
_watches = {}  # watch id -> RemoteWatch (serving process)


def init_app(app):
    """Take watch messages from this process's inbox, and log-ins that ended anywhere."""
    from . import resume_relay  # resumes relay the same way

    cluster.subscribe(cluster.INBOX, on_message)
    cluster.subscribe(registry.LOGIN_CHANNEL, on_login_ended)
    resume_relay.init_app(app)


@contextmanager
def woken():
    """Give the relay loop the event that relayed watchers set (the job driver waits on it, with a timeout)."""
    yield _wake


class Relay:
    """The holder's side of one relayed watch: a Watcher on the terminal, drained into messages."""

    def __init__(self, request, terminal):
        self.id, self.to, self.terminal = request["id"], request["reply"], terminal
        self.watcher = Watcher(request["name"], user_id=request.get("user"), login_id=request.get("login"), wake=_wake)
        self.seq, self.heard, self.sent = 0, time.monotonic(), 0.0

    def pump(self):
        """Send what the watcher queued (some of it, when much waits); a beat when quiet; the end when it ended.
        Return whether more waits."""
        now = time.monotonic()
        if self.watcher.ended is None and now - self.heard > SILENCE:
            stop(self.watcher, "left")  # the serving process went away without a word
        for _ in range(BURST):
            items = self.watcher.take(BUDGET)
            if not items:
                break
            for message in _messages(items):
                self._send("watch-data", items=message)
        else:
            return True
        if now - self.sent >= BEAT:
            self._send("watch-data", items=[])
        if self.watcher.ended is not None:
            self._send("watch-end", message=self.watcher.ended, reason=self.watcher.reason)
            _relays.pop(self.id, None)
            self.terminal.unwatch(self.watcher, recorded=False)
        return False

    def _send(self, kind, **fields):
        """Send one numbered message to the serving process."""
        self.seq += 1
        self.sent = time.monotonic()
        cluster.send(self.to, {"kind": kind, "id": self.id, "seq": self.seq, **fields})


def step():
    """Serve new watch requests, then pump every relayed watch once (the continuous job "watch-relay")."""
    while _pending:
        _begin(_pending.popleft())
    busy = [relay.pump() for relay in list(_relays.values())]
    return any(busy) or bool(_pending)


def _begin(request):
    """Attach a relayed watcher to the terminal a request names, or answer that it is not here."""
    terminal = registry.find(request["session"])
    if request["id"] in _left:
        return  # its watcher left already: no tab should say it is watched
    if terminal is None:
        cluster.send(request["reply"], {"kind": "watch-end", "id": request["id"], "seq": 1,
                                        "message": "The session ended.", "reason": "session_ended"})
        return
    relay = Relay(request, terminal)
    _relays[relay.id] = relay
    try:
        terminal.watch(relay.watcher, recorded=False)  # the serving process recorded it, in the watcher's request
    except Exception:  # its pump then tells the serving process that watching stopped
        log.exception("relaying a watch of session %s", terminal.metadata.id)
        stop(relay.watcher, "error")
        return
    log.info("relaying a watch of session %s to %s", terminal.metadata.id, relay.to)


def serve_elsewhere(websocket, session_id, watcher):
    """Show a watcher a session this process does not hold, through its holder; say so when it cannot."""
    row = db.session.get(TerminalSession, session_id)
    holder = row.worker if row is not None and row.ended_at is None else None
    metadata = SessionMetadata.of(row) if holder else None
    db.session.remove()  # hold no database connection for the watch's lifetime
    if holder is None or not cluster.reaches(holder):
        websocket.send(json.dumps({"type": "error", "message": NOT_REACHED if holder else "This session has ended."}))
        return
    try:
        session_events.watch_started(metadata, watcher.name)  # here: the watcher's name, address and browser
    except AuditWriteError:
        websocket.send(json.dumps({"type": "error", "message": AUDIT_REFUSES}))
        return
    watch = RemoteWatch(session_id, holder, watcher)
    try:
        watch.open()
        watcher.run(websocket)
    finally:
        watch.close()
        record_watch_end(metadata, watcher)


class RemoteWatch:
    """The serving process's side of one relayed watch: what the holder sends goes into a local Watcher."""

    def __init__(self, session_id, holder, watcher):
        self.id, self.session_id, self.holder = uuid.uuid4().hex, session_id, holder
        self.watcher = watcher
        self.watchers = (watcher,)  # what the log-in checks read, as on a terminal
        self.seq, self.heard = 0, time.monotonic()
        self.beat_at = self.heard

    def open(self):
        """Ask the holder for the watch; the local watcher shows what comes."""
        _watches[self.id] = self
        self.watcher.start([])  # the holder puts the first screen in front of its output
        log.info("asking %s to relay a watch of session %s", self.holder, self.session_id)
        if not cluster.send(self.holder, {"kind": "watch", "id": self.id, "session": self.session_id,
                                          "reply": worker_id(), "name": self.watcher.name,
                                          "user": self.watcher.user_id, "login": self.watcher.login_id}):
            self.watcher.end(HOLDER_LOST, "holder_lost")

    def take(self, message):
        """Apply one message of the holder: output and size changes, or the end; a gap ends the watch."""
        self.heard = time.monotonic()
        if message.get("seq") != self.seq + 1:
            stop(self.watcher, "fell_behind")  # messages were lost (the listener reconnected): the screen is wrong
            return
        self.seq += 1
        if message["kind"] == "watch-end":
            self.watcher.end(message.get("message") or HOLDER_LOST, message.get("reason") or "session_ended")
        for frame in unpack(message.get("items")):
            if isinstance(frame, bytes):
                self.watcher.output(frame)
            else:
                self.watcher.control_text(frame)

    def close(self):
        """Forget the watch and tell the holder why it ended (its watcher goes)."""
        _watches.pop(self.id, None)
        cluster.send(self.holder, {"kind": "unwatch", "id": self.id, "reason": self.watcher.reason or "left"})


def on_message(message):
    """Handle a watch message sent to this process: a request, a beat or an end (holder); data or an end (server)."""
    kind, relay, watch = message.get("kind"), _relays.get(message.get("id")), _watches.get(message.get("id"))
    if kind == "watch":
        _pending.append(message)
        _wake.set()
    elif kind == "unwatch" and relay is None:
        _left.append(message.get("id"))
    elif kind in ("watch-beat", "unwatch") and relay is not None:
        relay.heard = time.monotonic()
        if kind == "unwatch":
            stop(relay.watcher, message.get("reason") or "left")
    elif kind in ("watch-data", "watch-end") and watch is not None:
        watch.take(message)


def on_login_ended(message):
    """End at once this process's relayed watches made through a log-in that ended (anywhere)."""
    for watch in list(_watches.values()):
        if message.get("login") and watch.watcher.login_id == message.get("login"):
            stop(watch.watcher, message.get("reason"))


def check():
    """Each second: end relayed watches whose watcher may not keep them or whose holder went quiet; beat the rest."""
    watches = list(_watches.values())
    if not watches:
        return 0
    end_refused(watches)
    now = time.monotonic()
    for watch in watches:
        if now - watch.heard > SILENCE:
            watch.watcher.end(HOLDER_LOST, "holder_lost")
        elif now - watch.beat_at >= BEAT:
            watch.beat_at = now
            cluster.send(watch.holder, {"kind": "watch-beat", "id": watch.id})
    return len(watches)
