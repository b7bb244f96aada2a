"""The live terminal: one object owns the websocket, the SSH bridge and its session row.

LiveTerminal.open() connects and records the start, run() pumps both ways, close(reason) ends it
once and writes the end. The process keeps its live terminals here; the maintenance loop beats
their hearts, ends those somebody asked to end, and retries ends that could not be written.
"""
import json
import logging
import threading
import time

from simple_websocket import ConnectionClosed

from app.audit.events import AuditWriteError
from app.auth import sessions as log_ins
from app.blocking import run_blocking
from app.dbtypes import now_utc
from app.devices.credentials import CredentialError, open_credentials
from app.devices.secrets import recording_key
from app.extensions import db
from app.signals import login_ended

from . import hostkeys, records
from .bridge import ConnectError, connect
from .recording import FLUSH_BYTES, Recorder, RecordingError
from .watchers import Watched, end_for_login, end_refused, stop

log = logging.getLogger("gatehouse.terminals")

AUDIT_DOWN = "The audit trail cannot be written; the session is refused."
RECORDING_DOWN = "Recordings cannot be written; the session is refused."
# Output a recorder may hold before the terminal waits for it: bounds memory under bulk output.
MAX_UNFLUSHED = 8 * 1024 * 1024
# What the tab says when a session ends for a reason the user did not see coming.
END_MESSAGES = {
    "terminated": "An admin ended this session.",
    "access_revoked": "Your access to this device was revoked.",
    "device_deleted": "This device was deleted; the session has ended.",
    "owner_disabled": "The owner of this device was disabled; their stored credentials can no longer be used.",
    "logged_out": "You logged out in another window.",
    "password_changed": "Your password was changed; this log-in has ended.",
    "second_factor_changed": "Your second factor was set up or removed; log-ins from before it have ended.",
    "login_expired": "Your log-in session expired; log in again.",
    "expired": "Your log-in expired after a time without activity; log in again.",
    "ended_by_user": "This log-in was ended from the active log-ins list.",
    "ended_by_admin": "An admin ended your log-in.",
    "user_disabled": "Your account was disabled.",
    "user_deleted": "Your account was deleted.",
    "server_restart": "The server is restarting.",
    "remote_stuck": "The device stopped reading input.",
    "disconnected": "The connection to the device was lost.",
}
# A log-in's end reason as its terminals report it.
_LOGIN_REASONS = {"expired": "login_expired", "idle_timeout": "expired"}
# Close codes from the browser (RFC 6455): none received or abnormal means the network dropped.
_NO_CLOSE_FRAME = (1005, 1006, None)
_PROTOCOL_ERRORS = (1002, 1003, 1007, 1009)
_MAX_CONTROL = 4096  # a resize message is ~50 bytes; anything longer is not one

_live = {}  # session id -> LiveTerminal, for this process
_live_lock = threading.Lock()
_unwritten = []  # (terminal, ended_at, row_closed) whose end could not be written yet


class LiveTerminal(Watched):
    """One open terminal; close(reason) acts once, the first reason wins, and writes the end."""

    def __init__(self, websocket, user, device, source_ip, login, config, size=(80, 24)):
        super().__init__()
        self.websocket, self.user, self.device, self.source_ip = websocket, user, device, source_ip
        self.login_id = login.id if login else None
        self.login_expires = login.expires_at if login else None
        self.config = config
        self.bridge = self.facts = self.recorder = self.seal = None
        self._send_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush of the recorder at a time
        self._recording_reported = False
        self.size = size  # columns and rows of the browser's terminal
        self._closed = False
        # Input is the user's activity: noted here, written for the log-in by heartbeat() at most once per interval.
        self.input_at = self.activity_written_at = 0.0

    def send(self, data):
        """Send one frame; the pump and the receive loop both write to the socket."""
        with self._send_lock:
            self.websocket.send(data)

    def tell(self, kind, message=None, **extra):
        """Send a JSON control message to the browser."""
        self.send(json.dumps({"type": kind, "message": message, **extra}))

    def open(self):
        """Connect to the device and record the start; on failure tell the browser and return False."""
        self.tell("status", f"Connecting to {self.device.label}…")
        if self.config["RECORDING"] == "on":
            try:  # fail closed, like the trail: no session that cannot be recorded
                records.recording_store().check()
            except RecordingError as exc:
                log.error("session refused: %s", exc)
                records.fail(self.user, self.device, "recording_unavailable", str(exc))
                self.tell("error", RECORDING_DOWN, reason="recording")
                return False
        try:
            credentials = open_credentials(self.device)
            db.session.remove()  # hold no database connection across network waits
            self.bridge = connect(
                self.device.host, self.device.port, self.device.username, password=credentials.password,
                pkey=credentials.pkey, timeout=self.config["SSH_CONNECT_TIMEOUT"],
                keepalive=self.config["SSH_KEEPALIVE_SECONDS"], stuck_after=self.config["SSH_WRITE_TIMEOUT"],
                cols=self.size[0], rows=self.size[1],
                check_host_key=hostkeys.checker(self.device, self.user.username))
        except (ConnectError, CredentialError) as exc:
            records.fail(self.user, self.device, exc.reason, exc.message)
            self.tell("error", exc.message, reason=exc.reason, **getattr(exc, "extra", {}))  # a changed key: its accept link
            return False
        except AuditWriteError:  # trusting a new host key could not be recorded
            self.tell("error", AUDIT_DOWN, reason="audit")
            return False
        return self._record_start()

    def _record_start(self):
        """Write the session row and session.started; without both, no session (fail closed)."""
        try:
            self.facts = records.open_row(self.user, self.device, self.source_ip, self.login_id)
        except Exception as exc:  # the trail or the database refused: close the SSH side, say so
            log.error("session start could not be recorded: %s", exc)
            self.bridge.close("error")
            self.tell("error", AUDIT_DOWN, reason="audit")
            return False
        finally:
            db.session.remove()  # hold no database connection for the session's lifetime
        with _live_lock:
            _live[self.facts.id] = self
        return self._start_recording()

    def _start_recording(self):
        """Open the session's recording; a recording that cannot start ends the session (fail closed)."""
        if self.config["RECORDING"] != "on":
            return True
        try:
            self.recorder = Recorder(records.recording_store(), self.facts.id, recording_key(),
                                     cols=self.size[0], rows=self.size[1],
                                     title=f"{self.user.username} on {self.device.label}",
                                     max_bytes=self.config["RECORDING_MAX_MB"] * 1024 * 1024)
        except RecordingError as exc:
            log.error("session %s refused: %s", self.facts.id, exc)
            self.seal = {"state": "failed", "error": str(exc)}
            self.tell("error", RECORDING_DOWN, reason="recording")
            self.close("recording_failed")
            return False
        return True

    def output(self, data):
        """Send remote output to the browser and the recorder (the pump's sender)."""
        self.fan_out(data)
        recorder = self.recorder
        if recorder is not None and recorder.buffered > FLUSH_BYTES and not self._flush_lock.locked():
            if recorder.buffered > MAX_UNFLUSHED:
                self.flush_recording()  # the pump waits: memory stays bounded
            else:
                threading.Thread(target=self.flush_recording, daemon=True).start()
        self.send(data)

    def flush_recording(self, finish=False):
        """Write what the recorder holds, off the event loop; finish=True closes it and keeps the seal."""
        recorder = self.recorder
        if recorder is None:
            return
        with self._flush_lock:
            if finish:
                if self.seal is None:
                    self.seal = run_blocking(recorder.finish)
            elif recorder.state == "recording":
                run_blocking(recorder.flush)

    def report_recording(self):
        """Store the commands the recorder found and audit a recording that stopped (needs the app)."""
        recorder = self.recorder
        if recorder is None:
            return
        commands = [recorder.commands.popleft() for _ in range(len(recorder.commands))]
        if commands:
            records.save_commands(self.facts, commands)
        if recorder.state in ("failed", "limited") and not self._recording_reported:
            self._recording_reported = True
            records.recording_stopped(self.facts, recorder.state, recorder.error, self.config["RECORDING_MAX_MB"])

    def run(self):
        """Pump output to the browser and input to the device until either side ends; then close."""
        bridge = self.bridge
        try:
            self.tell("connected", host_key=bridge.host_fingerprint, host_key_type=bridge.host_key_type,
                      session=self.facts.id)
            threading.Thread(target=bridge.pump, args=(self.output,), daemon=True).start()
            while not bridge.closed.is_set():
                message = self.websocket.receive(timeout=1)
                if isinstance(message, bytes):
                    self.input_at = time.monotonic()
                    if self.recorder is not None:
                        self.recorder.input(message)
                    bridge.write(message)
                elif message is not None:
                    self._control(message)
            self.tell("closed", self._closing_words(), reason=bridge.reason)
        except ConnectionClosed:
            bridge.close(_client_reason(self.websocket.close_reason))
        finally:
            self.close("error")  # keeps the reason of whoever closed first

    def _closing_words(self):
        """Return the sentence the tab shows when the session ends."""
        if self.bridge.exit_code is not None:
            return f"Session closed (exit status {self.bridge.exit_code})."
        return END_MESSAGES.get(self.bridge.reason, "Session closed.")

    def _control(self, text):
        """Apply one JSON control message; answer nonsense with an error message, never a crash."""
        try:
            if len(text) > _MAX_CONTROL:
                raise ValueError("control message too long")
            message = json.loads(text)
            if not isinstance(message, dict) or message.get("type") != "resize":
                raise ValueError("unknown control message")
            cols, rows = message.get("cols"), message.get("rows")
            if not (type(cols) is int and type(rows) is int and 1 <= cols <= 1000 and 1 <= rows <= 1000):
                raise ValueError("resize needs whole numbers cols and rows between 1 and 1000")
        except (ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError
            self.tell("error", f"ignored control message: {str(exc)[:120]}")
            return
        self.bridge.resize(cols, rows)
        self.resized(cols, rows)

    def close(self, reason):
        """Close the SSH side, seal the recording and write the end, once; an end that cannot be written is retried."""
        self.bridge.close(reason)
        with _live_lock:
            if self._closed or self.facts is None:
                return
            self._closed = True
        ended_at = now_utc()
        for watcher in self.watchers:
            stop(watcher, "session_ended")
        try:
            self.flush_recording(finish=True)
            self.report_recording()
        except Exception:  # the end event must still be written; it says what became of the recording
            log.exception("finishing the recording of session %s", self.facts.id)
        finally:
            with _live_lock:
                _live.pop(self.facts.id, None)
        _write_end(self, ended_at, row_closed=False)


def _client_reason(code):
    """Map the browser's close code to an end reason."""
    if code in _NO_CLOSE_FRAME:
        return "disconnected"
    return "protocol_error" if code in _PROTOCOL_ERRORS else "client_closed"


def _write_end(terminal, ended_at, row_closed):
    """Write the end of a terminal with its real end time; keep it for a retry when that fails."""
    bridge = terminal.bridge
    try:
        records.close_row(terminal.facts, bridge.reason, bridge.bytes_in, bridge.bytes_out, ended_at, row_closed,
                          recording=terminal.seal)
        return True
    except Exception as exc:
        row_closed = row_closed or isinstance(exc, AuditWriteError)
        log.error("end of session %s not written yet (will retry): %s", terminal.facts.id, exc)
        with _live_lock:
            _unwritten.append((terminal, ended_at, row_closed))
        return False
    finally:
        db.session.remove()


def retry_unwritten():
    """Try again to write the ends that failed (a full disk, a database restart)."""
    with _live_lock:
        pending = list(_unwritten)
        _unwritten.clear()
    return sum(_write_end(*item) for item in pending)


def find(session_id):
    """Return the live terminal of this process with this session id, or None."""
    with _live_lock:
        return _live.get(session_id)


def live_terminals():
    """Return the terminals this process holds."""
    with _live_lock:
        return list(_live.values())


def flush_recordings():
    """Flush every recording this process writes (each second), in one trip to the thread pool; store their finds."""
    terminals = [t for t in live_terminals() if t.recorder is not None]
    due = [t for t in terminals if t.recorder.state == "recording" and t._flush_lock.acquire(blocking=False)]
    try:  # one trip for all: with hundreds of terminals, a trip each costs more than the flushes
        if due:
            run_blocking(_flush_each, [t.recorder for t in due])
    finally:
        for terminal in due:
            terminal._flush_lock.release()
    for terminal in terminals:
        try:
            terminal.report_recording()
        except Exception:  # one recording's trouble must not keep the others from being written
            log.exception("storing what the recording of session %s found", terminal.facts.id)
    return len(due)


def _flush_each(recorders):
    """Flush recorders one after the other (in a pool thread); one that fails does not stop the rest."""
    for recorder in recorders:
        try:
            recorder.flush()
        except Exception:
            log.exception("flushing recording %s", recorder.name)


def heartbeat():
    """Refresh heartbeat and byte counters of every terminal this process holds; note their input as activity."""
    terminals = live_terminals()
    if terminals:
        records.heartbeat([(t.facts.id, t.bridge.bytes_in, t.bridge.bytes_out) for t in terminals])
        _note_input(terminals)
    return len(terminals)


def _note_input(terminals):
    """Count the input typed since the last note as activity of each terminal's log-in (idle timeout)."""
    now, every = time.monotonic(), log_ins.touch_every().total_seconds()
    due = [t for t in terminals
           if t.login_id and t.input_at > t.activity_written_at and now - t.activity_written_at >= every]
    for terminal in due:
        terminal.activity_written_at = now
    log_ins.note_terminal_input(sorted({t.login_id for t in due}))


def watch():
    """End the terminals somebody asked to end (any process or node) and those whose log-in expired; end the
    watches their watchers may not keep."""
    terminals = live_terminals()
    if not terminals:
        return 0
    end_refused(terminals)
    asked = records.end_requests([t.facts.id for t in terminals])
    now = now_utc()
    for terminal in terminals:
        if terminal.facts.id in asked:
            terminal.bridge.close(asked[terminal.facts.id])
        elif terminal.login_expires is not None and terminal.login_expires <= now:
            terminal.bridge.close("login_expired")
    return len(asked)


def close_all(reason="server_restart"):
    """Close every terminal this process holds (clean shutdown): SSH side first, then the rows."""
    for terminal in live_terminals():
        try:
            terminal.close(reason)
        except Exception:  # one broken terminal must not keep the others open
            log.exception("closing session %s", terminal.facts.id)


@login_ended.connect
def _on_login_ended(_sender, login_id, reason):
    """Flag the terminals of a log-in that ended; close at once those this process holds, and its watches."""
    end_for_login(live_terminals(), login_id, reason)
    reason = _LOGIN_REASONS.get(reason, reason)
    ids = set(records.end_login(login_id, reason))
    for terminal in live_terminals():
        if terminal.facts.id in ids:
            terminal.bridge.close(reason)
