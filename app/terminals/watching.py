"""Watching a live terminal, read-only: the terminal's pump queues output, the watcher's own loop sends it.

A watcher that cannot keep up is dropped rather than slowing the session it watches. No Flask here.
"""
import collections
import json
import threading

from simple_websocket import ConnectionClosed

MAX_QUEUED = 1024 * 1024  # output a watcher may fall behind by before it is dropped


class Watcher:
    """One person watching one terminal."""

    def __init__(self, name):
        self.name = name
        self.ended = None  # the sentence the watcher's page shows when watching stops
        self._queue = collections.deque()
        self._queued = 0
        self._wake = threading.Event()

    def output(self, data):
        """Queue terminal output (called from the terminal's pump: never blocks)."""
        if self.ended is not None:
            return
        if self._queued + len(data) > MAX_QUEUED:
            self.end("Watching stopped: this connection could not keep up with the session's output.")
            return
        self._queue.append(data)
        self._queued += len(data)
        self._wake.set()

    def control(self, kind, **values):
        """Queue a control message (the session's size)."""
        self._queue.append(json.dumps({"type": kind, **values}))
        self._wake.set()

    def end(self, message):
        """Stop watching with a sentence for the watcher; the first one counts."""
        if self.ended is None:
            self.ended = message
        self._wake.set()

    def run(self, websocket):
        """Send queued output until watching ends or the watcher's page goes away."""
        try:
            while self.ended is None and websocket.connected:
                self._wake.wait(1.0)
                self._wake.clear()
                self._send_queued(websocket)
            self._send_queued(websocket)
            if self.ended is not None:
                websocket.send(json.dumps({"type": "closed", "message": self.ended}))
        except ConnectionClosed:
            self.end("closed")

    def _send_queued(self, websocket):
        """Send everything queued so far, in order."""
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, bytes):
                self._queued -= len(item)
            websocket.send(item)
