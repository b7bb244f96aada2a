"""Watching a live terminal, read-only: the terminal's pump queues output, the watcher's own loop sends it.

A watcher that cannot keep up is dropped rather than slowing the session it watches. A watcher is attached
before its first screen is drawn and holds the output that comes meanwhile: start() puts the screen in front
and drops what the screen already shows, so nothing is lost and nothing comes twice. No Flask here.
"""
import collections
import json
import threading

from simple_websocket import ConnectionClosed

MAX_QUEUED = 1024 * 1024  # output a watcher may fall behind by before it is dropped
FELL_BEHIND = "Watching stopped: this connection could not keep up with the session's output."


class Watcher:
    """One person watching one terminal, through one of their log-ins."""

    def __init__(self, name, user_id=None, login_id=None, wake=None):
        self.name, self.user_id, self.login_id = name, user_id, login_id
        self.ended = None  # the sentence the watcher's page shows when watching stops
        self.reason = None  # why watching stopped, for the trail (the first reason counts, like the sentence)
        self._queue = collections.deque()
        self._queued = 0
        self._started = False  # nothing is sent before the first screen is in front of the queue
        self._wake = wake or threading.Event()  # shared by the watchers one relay loop serves (app.terminals.relay)

    @property
    def queued(self):
        """Return how many output bytes wait to be sent."""
        return self._queued

    def output(self, data):
        """Queue terminal output (called from the terminal's pump: never blocks)."""
        if self.ended is not None:
            return
        if self._queued + len(data) > MAX_QUEUED:
            self.end(FELL_BEHIND, "fell_behind")
            return
        self._queue.append(data)
        self._queued += len(data)
        self._wake.set()

    def control(self, kind, **values):
        """Queue a control message (the session's size)."""
        self._queue.append(json.dumps({"type": kind, **values}))
        self._wake.set()

    def control_text(self, text):
        """Queue a control message that came as JSON text (relayed from the process holding the terminal)."""
        self._queue.append(text)
        self._wake.set()

    def start(self, first, skip=0):
        """Put the first frames (size, screen) in front of the queue, dropping skip bytes of output they already show.

        The caller keeps the terminal's output away meanwhile (its fan-out lock).
        """
        queue = collections.deque(first)
        for item in self._queue:
            if skip > 0 and isinstance(item, bytes):  # size changes stay: only output repeats what the screen shows
                cut = min(skip, len(item))
                skip, self._queued, item = skip - cut, self._queued - cut, item[cut:]
                if not item:
                    continue
            queue.append(item)
        self._queue = queue
        self._started = True
        self._wake.set()

    def end(self, message, reason):
        """Stop watching with a sentence for the watcher and a reason for the trail; the first one counts."""
        if self.ended is None:
            self.ended, self.reason = message, reason
        self._wake.set()

    def run(self, websocket):
        """Send queued output until watching ends or the watcher's page goes away."""
        try:
            while self.ended is None and websocket.connected:
                self._wake.wait(1.0)
                self._wake.clear()
                self._send_queued(websocket)
            if self.ended is None:
                self.end("closed", "left")  # the page went away
                return
            self._send_queued(websocket)
            websocket.send(json.dumps({"type": "closed", "message": self.ended}))
        except ConnectionClosed:
            self.end("closed", "left")

    def take(self, limit):
        """Take the frames queued so far, in order, about limit bytes of them (at least one; none before the first
        screen): for a loop that sends them on elsewhere instead of run()."""
        taken, size = [], 0
        while self._started and self._queue and (not taken or size + len(self._queue[0]) <= limit):
            item = self._queue.popleft()
            if isinstance(item, bytes):
                self._queued -= len(item)
            taken.append(item)
            size += len(item)
        return taken

    def _send_queued(self, websocket):
        """Send everything queued so far, in order (nothing before the first screen)."""
        while self._started and self._queue:
            item = self._queue.popleft()
            if isinstance(item, bytes):
                self._queued -= len(item)
            websocket.send(item)
