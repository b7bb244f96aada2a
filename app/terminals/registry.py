"""The live terminals of this process: found by session id, beaten, flushed, ended on request, closed at shutdown.

A LiveTerminal is held here from its recorded start to its close (hold, release). Background jobs call
heartbeat(), end_requested(), flush_recordings() and retry_unwritten() each tick, and close_all() when the
process stops; ends that could not be written wait here for the next retry. A log-in that ends (anywhere in
this process) ends its terminals and watches at once: init_app connects that receiver.
"""
import logging
import threading
import time

from app import cluster
from app.auth import logins
from app.blocking import run_blocking
from app.dbtypes import now_utc
from app.metrics import TERMINALS_OPEN
from app.session_ends import END_CHANNEL, end_login
from app.signals import login_ended

from . import session_rows
from .watch_facts import termination_reason
from .watchers import end_for_login, end_refused

log = logging.getLogger("gatehouse.terminals")

LOGIN_CHANNEL = "login-ended"  # {"login": id, "reason": why}: its watches end in every process at once
# A log-in's end reason as its terminals report it.
LOGIN_REASONS = {"expired": "login_expired", "idle_timeout": "expired"}

_live = {}  # session id -> LiveTerminal, for this process
_lock = threading.Lock()
_unwritten = []  # (terminal, ended_at, row_closed) whose end could not be written yet
_opening = 0  # terminals being opened: they count against the limit before they are held
# Sessions one heartbeat transaction writes: thousands in one would stall every terminal of the worker meanwhile.
HEARTBEAT_BATCH = 100
_ending = threading.Lock()  # the tick and a cluster message look at end requests one at a time


def init_app(app):
    """Listen for log-ins that end, so their terminals end with them, and for ends asked anywhere in the cluster."""
    from . import relay  # it finds terminals here

    login_ended.connect(on_login_ended)
    cluster.subscribe(END_CHANNEL, on_end_asked)
    cluster.subscribe(LOGIN_CHANNEL, on_login_ended_elsewhere)
    relay.init_app(app)


def hold(terminal):
    """Keep a terminal whose start is recorded, under its session id."""
    with _lock:
        if _live.setdefault(terminal.metadata.id, terminal) is terminal:
            TERMINALS_OPEN.inc()


def reserve(limit):
    """Take a place for a terminal about to open; False when this process holds limit terminals already."""
    global _opening
    with _lock:
        if len(_live) + _opening >= limit:
            return False
        _opening += 1
        return True


def unreserve():
    """Give back the place reserve() took, once the terminal is held or did not open."""
    global _opening
    with _lock:
        _opening -= 1


def release(terminal):
    """Forget a terminal that closed."""
    with _lock:
        if _live.get(terminal.metadata.id) is terminal:
            del _live[terminal.metadata.id]
            TERMINALS_OPEN.dec()


def find(session_id):
    """Return the live terminal of this process with this session id, or None."""
    with _lock:
        return _live.get(session_id)


def live_terminals():
    """Return the terminals this process holds."""
    with _lock:
        return list(_live.values())


def keep_unwritten(terminal, ended_at, row_closed):
    """Keep a terminal whose end could not be written, for retry_unwritten()."""
    with _lock:
        _unwritten.append((terminal, ended_at, row_closed))


def retry_unwritten():
    """Try again to write the ends that failed (a full disk, a database restart)."""
    with _lock:
        pending = list(_unwritten)
        _unwritten.clear()
    return sum(terminal.write_end(ended_at, row_closed) for terminal, ended_at, row_closed in pending)


def flush_recordings():
    """Flush every recording this process writes (each second), in one trip to the thread pool; store their finds."""
    terminals = [t for t in live_terminals() if t.recorder is not None]
    due = [t for t in terminals if t.begin_flush()]
    try:  # one trip for all: with hundreds of terminals, a trip each costs more than the flushes
        if due:
            run_blocking(_flush_each, [t.recorder for t in due])
    finally:
        for terminal in due:
            terminal.end_flush()
    for terminal in terminals:
        try:
            terminal.report_recording()
        except Exception:  # one recording's trouble must not keep the others from being written
            log.exception("storing what the recording of session %s found", terminal.metadata.id)
    return len(due)


def _flush_each(recorders):
    """Flush recorders one after the other (in a pool thread); one that fails does not stop the rest."""
    for recorder in recorders:
        try:
            recorder.flush()
        except Exception:
            log.exception("flushing recording %s", recorder.name)


def heartbeat():
    """Refresh heartbeat and byte counters of every terminal this process holds, HEARTBEAT_BATCH rows a transaction,
    letting the terminals run between batches; note their input as activity."""
    terminals = live_terminals()
    counters = [(t.metadata.id, t.bridge.bytes_in, t.bridge.bytes_out) for t in terminals]
    for start in range(0, len(counters), HEARTBEAT_BATCH):
        if start:
            time.sleep(0.001)  # on gevent: the loop polls, so every terminal's pending work runs before the next batch
        session_rows.heartbeat(counters[start:start + HEARTBEAT_BATCH])
    if terminals:
        _note_input(terminals)
    return len(terminals)


def _note_input(terminals):
    """Count the input typed since the last note as activity of each terminal's log-in (idle timeout)."""
    now, every = time.monotonic(), logins.touch_every().total_seconds()
    due = [t for t in terminals
           if t.login_id and t.input_at > t.activity_written_at and now - t.activity_written_at >= every]
    for terminal in due:
        terminal.activity_written_at = now
    logins.note_terminal_input(sorted({t.login_id for t in due}))


def end_requested():
    """End the terminals somebody asked to end (any process or node) and those whose log-in expired; end the
    watches their watchers may not keep. Return how many were asked to end."""
    with _ending:
        return _end_requested()


def _end_requested():
    """end_requested(), one caller at a time."""
    terminals = live_terminals()
    if not terminals:
        return 0
    end_refused(terminals)
    asked = session_rows.end_requests([t.metadata.id for t in terminals])
    now = now_utc()
    for terminal in terminals:
        if terminal.metadata.id in asked:
            reason = asked[terminal.metadata.id]
            terminal.end(reason, termination_reason(terminal.metadata.id) if reason == "terminated" else "")
            _interrupt(terminal)
        elif terminal.login_expires is not None and terminal.login_expires <= now:
            terminal.end("login_expired")
        elif terminal.resume_due():  # nobody came back in time, or its SSH side ended meanwhile
            terminal.close("disconnected")
    return len(asked)


def _interrupt(terminal):
    """Wake the loop that reads the terminal's browser, so the tab hears of the end now, not after its wait."""
    interrupt = getattr(getattr(terminal.websocket, "event", None), "interrupt", None)  # the route's InputGate
    if interrupt is not None:
        interrupt()


def close_all(reason="server_restart"):
    """Close every terminal this process holds (clean shutdown): SSH side first, then the rows."""
    for terminal in live_terminals():
        try:
            terminal.close(reason)
        except Exception:  # one broken terminal must not keep the others open
            log.exception("closing session %s", terminal.metadata.id)


def on_end_asked(message):
    """Look at the end requests at once when the cluster says some were set on sessions this process holds."""
    ids = message.get("ids")
    if ids is None or any(find(session_id) for session_id in ids):
        end_requested()


def on_login_ended_elsewhere(message):
    """End this process's watches made through a log-in that ended in another process (or node)."""
    if message.get("login"):
        end_for_login(live_terminals(), message["login"], message.get("reason"))


def on_login_ended(_sender, login_id, reason):
    """Flag the terminals of a log-in that ended; close at once those this process holds, and its watches; tell
    the other processes, whose watches through it end too."""
    end_for_login(live_terminals(), login_id, reason)
    cluster.publish(LOGIN_CHANNEL, {"login": login_id, "reason": reason})
    reason = LOGIN_REASONS.get(reason, reason)
    ids = set(end_login(login_id, reason))
    for terminal in live_terminals():
        if terminal.metadata.id in ids:
            terminal.end(reason)
