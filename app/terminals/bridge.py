"""The SSH side of a terminal: connect, then pump bytes between a paramiko channel and a sender.

Nothing here knows Flask. Under gunicorn's gevent worker the sockets and threads below are
cooperative; under plain threads they work the same.
"""
import collections
import logging
import threading
import time
from dataclasses import dataclass

import paramiko

from app.devices.ssh import ShellRequest, fingerprint, open_shell
from app.metrics import TERMINAL_BYTES

BYTES_IN, BYTES_OUT = TERMINAL_BYTES.labels("in"), TERMINAL_BYTES.labels("out")

log = logging.getLogger("gatehouse.bridge")

READ_CHUNK = 64 * 1024
MAX_PENDING = 1024 * 1024  # unsent input a terminal may hold; while it is full, write() blocks its caller
STUCK_AFTER = 30.0  # seconds a remote may take no input while input waits, before the session ends
SEND_CHUNK = 32 * 1024  # about one SSH packet: the most one channel.send takes
# A shut send window is polled (paramiko offers no public wait with a timeout that spares the pump's recv).
POLL_MIN, POLL_MAX = 0.002, 0.05
# paramiko's transport reads its socket with a 0.1 s timeout, only to look at its keepalive and rekey clocks when it
# wakes empty: ten wake-ups a second per idle terminal (a worker with 300 idle terminals spent 11-14 % of a core on
# them, 3-4 % with this). Once a second serves those clocks; a close closes the socket, which wakes it at once.
TRANSPORT_POLL = 1.0


@dataclass(frozen=True)
class ConnectRequest(ShellRequest):
    """Everything one terminal's connection needs, as one value: the shell to open and the input limits."""

    max_pending: int = MAX_PENDING
    stuck_after: float = STUCK_AFTER


def connect(request):
    """Open a login shell on the device (app.devices.ssh) and return the Bridge that pumps it."""
    transport, channel, key = open_shell(request)
    transport.sock.settimeout(TRANSPORT_POLL)
    return Bridge(transport, channel, fingerprint(key), key.get_name(), max_pending=request.max_pending,
                  stuck_after=request.stuck_after)


class Bridge:
    """One SSH channel and its transport; close(reason) acts once and the first reason wins.

    Input the channel cannot take at once waits in a queue of at most max_pending bytes, which a
    writer thread feeds to the channel as its window opens. A full queue blocks write(), so the
    caller stops reading its client; a remote that takes nothing for stuck_after seconds while
    input waits ends the session with reason remote_stuck.
    """

    def __init__(self, transport, channel, host_fingerprint, host_key_type, *, max_pending=MAX_PENDING,
                 stuck_after=STUCK_AFTER):
        if max_pending < 1 or stuck_after <= 0:
            raise ValueError(f"max_pending={max_pending!r} and stuck_after={stuck_after!r} must be positive")
        self.transport = transport
        self.channel = channel
        self.host_fingerprint = host_fingerprint
        self.host_key_type = host_key_type
        self.max_pending = max_pending
        self.stuck_after = stuck_after
        self.bytes_in = 0  # browser -> device, as the channel accepted it
        self.bytes_out = 0  # device -> browser
        self.pending = 0  # queued input the channel has not accepted yet
        self.reason = None
        self.exit_code = None
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._queue = collections.deque()  # memoryviews; only the writer thread takes from the left
        self._room = threading.Condition()  # guards the queue and counters; notified on every change
        self._write_lock = threading.Lock()  # one write() at a time keeps each frame's bytes together
        self._progress_at = time.monotonic()  # last time the channel took input, or input began to wait
        self._refused = False  # the channel no longer takes input (remote ended or link broke)
        self._writer = None

    def write(self, data):
        """Send input to the remote shell; block while max_pending bytes of earlier input still wait.

        Returns once every byte went to the channel or into the queue, or promptly once the bridge
        is closed (by anyone, or here as remote_stuck); input the channel refuses is dropped.
        """
        data = data if isinstance(data, bytes) else bytes(data)
        if not data:  # channel.send(b"") answers 0, which means a closed channel
            return
        with self._write_lock:
            offset = 0
            with self._room:
                direct = not self._queue
            if direct:  # typing: nothing waits, so the keys go straight out without a thread switch
                offset = self._send_some(data)
            while offset < len(data) and self._takes_input():
                offset += self._queue_some(data, offset)

    def _queue_some(self, data, offset):
        """Queue as much of data[offset:] as there is room for, waiting for room; return how much."""
        with self._room:
            while self.pending >= self.max_pending and self._takes_input():
                waited = time.monotonic() - self._progress_at
                if waited >= self.stuck_after:
                    break
                self._room.wait(self.stuck_after - waited)
            stuck = self.pending >= self.max_pending and self._takes_input()
            if not stuck and self._takes_input():
                take = min(len(data) - offset, self.max_pending - self.pending)
                if not self._queue:
                    self._progress_at = time.monotonic()  # the stuck clock runs while input waits
                piece = data if take == len(data) else data[offset:offset + take]  # a copy: frees the frame
                self._queue.append(memoryview(piece))
                self.pending += take
                self._room.notify_all()
                if self._writer is None:
                    self._writer = threading.Thread(target=self._drain, name="bridge-writer", daemon=True)
                    self._writer.start()
                return take
        if stuck:  # the writer thread normally ends it first, unless it hangs inside paramiko
            self.close("remote_stuck")
        return 0

    def _takes_input(self):
        """Return whether input can still go anywhere."""
        return not self.closed.is_set() and not self._refused

    def _send_some(self, data):
        """Hand the channel what its window takes now, never waiting for it; return how many bytes."""
        try:
            if not self.channel.send_ready():
                return 0
            sent = self.channel.send(bytes(data[:SEND_CHUNK]))
        except (OSError, EOFError, paramiko.SSHException):
            sent = 0
        if not sent:  # send_ready() is true on a closed channel: this input has nowhere to go
            self._input_refused()
            return 0
        BYTES_IN.inc(sent)
        with self._room:
            self.bytes_in += sent
            self._progress_at = time.monotonic()
        return sent

    def _input_refused(self):
        """Drop all waiting input; a remote that ended is the pump's to report, with its exit status."""
        with self._room:
            self._refused = True
            self._queue.clear()
            self.pending = 0
            self._room.notify_all()
        if not (self.channel.eof_received or self.channel.closed):
            self.close("disconnected")

    def _drain(self):
        """Feed queued input to the channel as its window opens; end the session when it stays shut."""
        delay = POLL_MIN
        while True:
            with self._room:
                while not self._queue and self._takes_input():
                    self._room.wait()
                if not self._takes_input():
                    return
                head = self._queue[0]
            sent = self._send_some(head)
            if sent:
                with self._room:
                    if self._queue and self._queue[0] is head:  # close() or a refusal may have emptied it
                        self._queue[0] = head[sent:]
                        if not self._queue[0]:
                            self._queue.popleft()
                        self.pending -= sent
                        self._room.notify_all()
                delay = POLL_MIN
            elif not self._takes_input():
                return
            elif time.monotonic() - self._progress_at >= self.stuck_after:
                self.close("remote_stuck")
            else:
                self.closed.wait(delay)
                delay = min(delay * 2, POLL_MAX)

    def resize(self, cols, rows):
        """Tell the remote PTY its new size (the remote program gets SIGWINCH)."""
        if not self.closed.is_set():
            try:
                self.channel.resize_pty(width=cols, height=rows)
            except (OSError, EOFError, paramiko.SSHException):
                self.close("disconnected")

    def pump(self, send):
        """Forward remote output to send(bytes) until the channel ends; then close."""
        reason = "remote_exit"
        try:
            while True:
                data = self.channel.recv(READ_CHUNK)
                if not data:
                    break
                self.bytes_out += len(data)
                BYTES_OUT.inc(len(data))
                send(data)
        except Exception as exc:  # the browser side is gone, or the network to the device
            reason = "disconnected" if not self.closed.is_set() else self.reason
            log.debug("pump ended: %r", exc)
        if reason == "remote_exit" and not self.closed.is_set():
            # The exit status may trail the end of output by a moment; without one the link died.
            if self.channel.status_event.wait(1.0) and self.channel.exit_status >= 0:
                self.exit_code = self.channel.exit_status
            elif not self.transport.is_active():
                reason = "disconnected"
        self.close(reason)

    def close(self, reason):
        """Close channel and transport once; the first reason given is kept."""
        with self._lock:
            if self.closed.is_set():
                return
            self.reason = reason
            self.closed.set()
        with self._room:  # wake a blocked write() and the writer thread; the queued input is dropped
            self._queue.clear()
            self.pending = 0
            self._room.notify_all()
        try:
            self.channel.close()
        finally:
            self.transport.close()
