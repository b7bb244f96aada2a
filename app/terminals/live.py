"""The live terminal: one object owns the websocket, the SSH bridge and its session row.

LiveTerminal.open() connects and records the start, run() pumps both ways, close(reason) ends it
once and writes the end. The process keeps its live terminals in app.terminals.registry, which
beats their hearts, ends those somebody asked to end and retries ends that could not be written.
"""
import logging
import threading
import time

from simple_websocket import ConnectionClosed

from app.audit.events import AuditWriteError
from app.blocking import run_blocking, submit
from app.crypto import recording_key
from app.dbtypes import now_utc
from app.devices import hostkeys
from app.devices.credentials import open_credentials
from app.devices.ssh import ConnectError
from app.extensions import db
from app.recording.recorder import FLUSH_BYTES, Recorder
from app.recording.store import RecordingError, open_store

from . import registry, session_commands, session_events, session_rows
from .attach import Attachable
from .bridge import ConnectRequest, connect
from .commands import CommandDetector, tokens
from .messages import (AUDIT_DOWN, NODE_FULL, RECORDING_DOWN, client_reason, closing_words, control_message,
                       parse_control)
from .sftp import close_files
from .watchers import Watched, stop

log = logging.getLogger("gatehouse.terminals")

# Output a recorder may hold before the terminal waits for it: bounds memory under bulk output.
MAX_UNFLUSHED = 8 * 1024 * 1024


class LiveTerminal(Watched, Attachable):
    """One open terminal; close(reason) acts once, the first reason wins, and writes the end."""

    def __init__(self, websocket, user, device, source_ip, login, config, size=(80, 24), window=None):
        Watched.__init__(self)
        Attachable.__init__(self, config)
        self.window = window
        self.websocket, self.user, self.device, self.source_ip = websocket, user, device, source_ip
        self.login_id = login.id if login else None
        self.login_expires = login.expires_at if login else None
        self.config = config
        self.bridge = self.metadata = self.recorder = self.seal = None
        self.end_note = ""  # the admin's reason for a terminate, said on the tab
        self._send_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush of the recorder at a time
        self._recording_reported = False
        self.size = size  # columns and rows of the browser's terminal
        self._closed = False
        self._close_lock = threading.Lock()  # close() acts once
        # Input is the user's activity: noted here, written for the log-in by heartbeat() at most once per interval.
        self.input_at = self.activity_written_at = 0.0

    def send(self, data):
        """Send one frame to the attached browser (none while detached); the pump and the receive loop both write."""
        with self._send_lock:
            if self.websocket is not None:
                self.websocket.send(data)

    control_message = staticmethod(control_message)

    def tell(self, kind, message=None, **extra):
        """Send a JSON control message to the browser."""
        self.send(self.control_message(kind, message, **extra))

    def open(self):
        """Connect to the device and record the start; on failure (or a full node) tell the browser, return False."""
        limit = self.config["MAX_TERMINALS_PER_WORKER"]
        if not registry.reserve(limit):
            log.warning("session with %s refused: this process holds %d terminals, its limit", self.device.label, limit)
            session_events.refused(self.user, self.device, "node_full",
                                   f"this server holds its limit of {limit} terminals", limit=limit)
            self.tell("error", NODE_FULL.format(limit=limit), reason="node_full")
            return False
        try:
            return self._open()
        finally:
            registry.unreserve()

    def _open(self):
        """Connect and record the start (open() holds a place for the terminal meanwhile)."""
        self.tell("status", f"Connecting to {self.device.label}…")
        if self.config["RECORDING"] == "on":
            try:  # fail closed, like the trail: no session that cannot be recorded
                open_store(self.config).check()
            except RecordingError as exc:
                log.error("session refused: %s", exc)
                session_events.failed(self.user, self.device, "recording_unavailable", str(exc))
                self.tell("error", RECORDING_DOWN, reason="recording")
                return False
        try:
            credentials = open_credentials(self.device)
            db.session.remove()  # hold no database connection across network waits
            self.bridge = connect(ConnectRequest(
                self.device.host, self.device.port, self.device.username, password=credentials.password,
                pkey=credentials.pkey, check_host_key=hostkeys.checker(self.device, self.user.username),
                timeout=self.config["SSH_CONNECT_TIMEOUT"], keepalive=self.config["SSH_KEEPALIVE_SECONDS"],
                size=self.size, stuck_after=self.config["SSH_WRITE_TIMEOUT"]))
        except ConnectError as exc:  # a CredentialError is one too
            session_events.failed(self.user, self.device, exc.reason, exc.message)
            # A changed host key carries the link to accept it (extra).
            self.tell("error", exc.message, reason=exc.reason, **getattr(exc, "extra", {}))
            return False
        except AuditWriteError:  # trusting a new host key could not be recorded
            self.tell("error", AUDIT_DOWN, reason="audit")
            return False
        return self._record_start()

    def _record_start(self):
        """Write the session row and session.started; without both, no session (fail closed)."""
        try:
            self.metadata = session_rows.open_row(self.user, self.device, self.source_ip, self.login_id)
        except Exception as exc:  # the trail or the database refused: close the SSH side, say so
            log.error("session start could not be recorded: %s", exc)
            self.bridge.close("error")
            self.tell("error", AUDIT_DOWN, reason="audit")
            return False
        finally:
            db.session.remove()  # hold no database connection for the session's lifetime
        registry.hold(self)
        return self._start_recording()

    def _start_recording(self):
        """Open the session's recording; a recording that cannot start ends the session (fail closed)."""
        if self.config["RECORDING"] != "on":
            return True
        try:
            self.recorder = Recorder(open_store(self.config), self.metadata.id, recording_key(),
                                     cols=self.size[0], rows=self.size[1],
                                     title=f"{self.user.username} on {self.device.label}",
                                     max_bytes=self.config["RECORDING_MAX_MB"] * 1024 * 1024,
                                     detector=CommandDetector(self.size[0], self.size[1]), tokens=tokens)
        except RecordingError as exc:
            log.error("session %s refused: %s", self.metadata.id, exc)
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
            elif self.begin_flush():  # in the thread pool: the pump goes on at once, the per-second flush skips it
                submit(recorder.flush, done=self.end_flush)
        self.deliver(data)

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

    def begin_flush(self):
        """Take the turn to flush a recorder that is recording, unless a flush runs; say whether it was taken."""
        recorder = self.recorder
        return recorder is not None and recorder.state == "recording" and self._flush_lock.acquire(blocking=False)

    def end_flush(self):
        """Give back the turn begin_flush() took."""
        self._flush_lock.release()

    def report_recording(self):
        """Store the commands the recorder found and audit a recording that stopped (needs the app)."""
        recorder = self.recorder
        if recorder is None:
            return
        commands = [recorder.commands.popleft() for _ in range(len(recorder.commands))]
        if commands:
            session_commands.save_commands(self.metadata, commands)
        if recorder.state in ("failed", "limited") and not self._recording_reported:
            self._recording_reported = True
            session_events.recording_stopped(self.metadata, recorder.state, recorder.error,
                                             self.config["RECORDING_MAX_MB"])

    def run(self):
        """Start pumping output, then serve the browser that opened the terminal."""
        bridge = self.bridge
        try:
            self.tell("connected", host_key=bridge.host_fingerprint, host_key_type=bridge.host_key_type,
                      session=self.metadata.id, offset=0, resume_seconds=self.resume_seconds)
        except ConnectionClosed:
            pass  # gone already: serve() finds out and detaches
        threading.Thread(target=bridge.pump, args=(self.output,), daemon=True).start()
        self.serve(self.websocket)

    def serve(self, websocket):
        """Take one browser's input to the device until the session ends, the browser goes (the session is then
        kept for a resume) or another browser takes the session over; close the session when it ended."""
        bridge = self.bridge
        try:
            while not bridge.closed.is_set() and self.websocket is websocket:
                self._take(websocket.receive(timeout=1))
            if self.websocket is not websocket:
                return  # resumed in another window: the session goes on there
            self.tell("closed", closing_words(bridge.exit_code, bridge.reason, self.end_note), reason=bridge.reason)
        except ConnectionClosed:
            reason = client_reason(websocket.close_reason)
            if self.websocket is not websocket or (reason == "disconnected" and self._keep(websocket)):
                return
            bridge.close(reason)
        except Exception:
            self.close("error")
            raise
        self.close("error")  # keeps the reason of whoever closed first

    def _keep(self, websocket):
        """Detach from a browser that went without a close, when resuming is on; say whether the session stays."""
        if self.resume_seconds <= 0 or self.bridge.closed.is_set():
            return False
        self.detach(websocket, websocket.close_reason)
        return True

    def _take(self, message):
        """Forward keystrokes to the device, or apply a control message (None: nothing came within a second)."""
        if isinstance(message, bytes):
            self.input_at = time.monotonic()
            if self.recorder is not None:
                self.recorder.input(message)
            self.bridge.write(message)
        elif message is not None:
            self._control(message)

    def _control(self, text):
        """Apply one JSON control message; answer nonsense with an error message, never a crash."""
        try:
            size = parse_control(text)
        except ValueError as exc:
            self.tell("error", f"ignored control message: {str(exc)[:120]}")
            return
        if size is None:
            self.tell("pong")  # the page's check that the socket still carries
        else:
            self.resize_to(size)

    def resize_to(self, size):
        """Give the remote PTY, the recording and the watchers a new size (columns, rows)."""
        self.bridge.resize(*size)
        self.resized(*size)

    def end(self, reason, note=""):
        """Ask the terminal to end: the SSH side closes now, the run loop then closes the rest (at once if detached);
        note (an admin's reason) is said on the tab."""
        self.end_note = note
        self.bridge.close(reason)
        if self.websocket is None:
            self.close(reason)

    def close(self, reason):
        """Close the SSH side, seal the recording and write the end, once; an end that cannot be written is retried."""
        self.bridge.close(reason)
        with self._close_lock:
            if self._closed or self.metadata is None:
                return
            self._closed = True
        ended_at = now_utc()
        close_files(self.metadata.id)  # its file manager's SFTP channel goes with it
        for watcher in self.watchers:
            stop(watcher, "session_ended")
        try:
            self.flush_recording(finish=True)
            self.report_recording()
        except Exception:  # the end event must still be written; it says what became of the recording
            log.exception("finishing the recording of session %s", self.metadata.id)
        finally:
            registry.release(self)
        self.write_end(ended_at, row_closed=False)

    def write_end(self, ended_at, row_closed):
        """Write the end with its real end time; hand it to the registry for a retry when that fails."""
        bridge = self.bridge
        try:
            session_rows.close_row(self.metadata, bridge.reason, bridge.bytes_in, bridge.bytes_out, ended_at,
                                   row_closed, recording=self.seal)
            return True
        except Exception as exc:
            row_closed = row_closed or isinstance(exc, AuditWriteError)
            log.error("end of session %s not written yet (will retry): %s", self.metadata.id, exc)
            registry.keep_unwritten(self, ended_at, row_closed)
            return False
        finally:
            db.session.remove()

