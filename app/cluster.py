"""Messages between the processes and nodes of one Gatehouse: publish(channel, payload) reaches at once every
process whose handler subscribe(channel, handler) named, the publisher's own included.

On PostgreSQL through LISTEN/NOTIFY (psycopg 3, cooperative under gevent once gunicorn patched the process): each
process keeps one autocommit connection that listens, stepped by a continuous job (a greenlet under gevent) that
connects again with a back-off when the database goes away, and one that publishes (`SELECT pg_notify(%s, %s)`, a
JSON payload under PostgreSQL's 8000-byte limit). On SQLite (one node) the same calls dispatch in-process. Handlers
run one after the other on that job's thread, in the app context, as messages arrive: they must be short (hand
anything slow to a job).

A message is a hint, never the only path: a process that was reconnecting, or not started, misses it, so whatever it
asks for (an end, a refused watch) is also found by the once-a-second jobs. Besides the shared channels, each process
has an inbox (INBOX) that others reach with send(its name, …): its name is the host:pid its session rows carry.
Before start() (a script, a test client), publish does nothing and returns False.
"""
import hashlib
import json
import logging
import queue
import threading
import time

import sqlalchemy as sa
from flask import has_app_context

from app.extensions import db

log = logging.getLogger("gatehouse.cluster")

MAX_PAYLOAD = 7999  # bytes of a NOTIFY payload PostgreSQL accepts
PREFIX = "gatehouse."  # every channel Gatehouse listens on starts with this; other users of the database are left be
INBOX = "@inbox"  # subscribe(INBOX, handler): messages sent to this process alone
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0  # seconds between tries to reach a database that went away
POLL_SECONDS = 1.0  # how often the listener looks up from its wait (to stop, or to listen on a new channel)


class PayloadTooLarge(ValueError):
    """A payload whose JSON does not fit in one NOTIFY."""


def inbox_of(name):
    """Return the channel of the process named name (host:pid): a fixed-length name PostgreSQL accepts."""
    return PREFIX + "to." + hashlib.sha256(name.encode()).hexdigest()[:24]


def encode(payload):
    """Return a payload as compact JSON; raise PayloadTooLarge when it would not fit in one NOTIFY."""
    text = json.dumps(payload, separators=(",", ":"))
    if len(text.encode()) > MAX_PAYLOAD:
        raise PayloadTooLarge(f"{len(text.encode())} bytes; a message carries at most {MAX_PAYLOAD}")
    return text


class Bus:
    """One process's end of the message bus: handlers by channel; stepped by a continuous job (app/jobs/table.py),
    which on PostgreSQL listens and on SQLite takes what this process queued."""

    def __init__(self):
        self.handlers = {}  # channel (as subscribed: a name or INBOX) -> [handler]
        self.url = self.name = None
        self.connected = threading.Event()  # the listener listens now (always set in-process)
        self.connections = 0  # how many times the listener (re)connected
        self.listener_pid = None  # the listening connection's backend pid
        self._running = False
        self._queue = queue.Queue()  # in-process messages (SQLite)
        self._listener, self._listening, self._retry_at, self._pause = None, set(), 0.0, BACKOFF_FIRST
        self._publisher, self._publish_lock = None, threading.Lock()

    @property
    def running(self):
        """Say whether the bus is started and not stopped."""
        return self._running

    @property
    def postgres(self):
        """Say whether messages go through PostgreSQL (else they stay in this process)."""
        return bool(self.url) and sa.make_url(self.url).get_backend_name() == "postgresql"

    def subscribe(self, channel, handler):
        """Call handler(payload) for every message on channel (INBOX: sent to this process); once per handler."""
        handlers = self.handlers.setdefault(channel, [])
        if handler not in handlers:
            handlers.append(handler)

    def start(self, url, name="local"):
        """Take messages for the database at url, as the process called name, from now on; return self."""
        self.url, self.name, self._running = url, name, True
        self._queue = queue.Queue()
        if not self.postgres:
            self.connected.set()
        return self

    def stop(self):
        """Stop: publish does nothing afterwards, the connections close (call it from the stepping thread)."""
        self._running = False
        self._drop_listener()
        with self._publish_lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None

    def reaches(self, name):
        """Say whether a message to the process named name can reach it (PostgreSQL: any; in-process: itself)."""
        return self.running and (self.postgres or name == self.name)

    def channel(self, channel):
        """Return the name a subscribed channel has on the wire."""
        return inbox_of(self.name) if channel == INBOX else PREFIX + channel

    def publish(self, channel, payload):
        """Send payload (a dict, JSON under 8000 bytes) on channel; return whether it went out (False: not started,
        or the database did not take it; the caller's fallback, a flag in the database, stays)."""
        text = encode(payload)
        wire = channel if channel.startswith(PREFIX) else PREFIX + channel
        if not self.running:
            return False
        if not self.postgres:
            self._queue.put((wire, text))
            return True
        return self._notify(wire, text)

    def _notify(self, wire, text):
        """NOTIFY on the publishing connection, connecting (once more after a failure) as needed."""
        import psycopg

        with self._publish_lock:
            for attempt in (1, 2):
                try:
                    if self._publisher is None or self._publisher.closed:
                        self._publisher = psycopg.connect(self._dsn(), autocommit=True, connect_timeout=5,
                                                          application_name="gatehouse-publish")
                    self._publisher.execute("SELECT pg_notify(%s, %s)", (wire, text))
                    return True
                except psycopg.Error as exc:
                    self._publisher = None
                    if attempt == 2:
                        log.warning("cluster message on %s not sent: %s", wire, _first_line(exc))
        return False

    def _dsn(self):
        """Return the libpq address of the database (without SQLAlchemy's driver name)."""
        return sa.make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    def step(self):
        """Take the messages of up to a second and hand each to its handlers; return whether to step again at once."""
        if not self.running:
            return False
        if not self.postgres:
            try:
                self._deliver(*self._queue.get(timeout=POLL_SECONDS))
            except queue.Empty:
                pass
            return True
        if self._listener is None and not self._connect():
            return False  # the job waits its idle_wait, then tries again once the back-off passed
        self._listen()
        return True

    def _connect(self):
        """Open the listening connection and LISTEN on every channel; on failure note when to try again."""
        import psycopg

        if time.monotonic() < self._retry_at:
            return False
        try:
            self._listener = psycopg.connect(self._dsn(), autocommit=True, connect_timeout=5,
                                             application_name="gatehouse-listen")
            self._listening = set()
            self._listen_new()
        except psycopg.Error as exc:
            self._drop_listener()
            log.warning("cluster listener cannot reach the database (again in %.1f s): %s", self._pause,
                        _first_line(exc))
            self._retry_at, self._pause = time.monotonic() + self._pause, min(self._pause * 2, BACKOFF_MAX)
            return False
        self.listener_pid, self._pause = self._listener.info.backend_pid, BACKOFF_FIRST
        self.connections += 1
        self.connected.set()
        return True

    def _listen(self):
        """Hand on the notifications of up to a second as they come; a lost connection is dropped for a reconnect."""
        import psycopg

        try:
            for note in self._listener.notifies(timeout=POLL_SECONDS):
                self._deliver(note.channel, note.payload)
            self._listen_new()
        except psycopg.Error as exc:
            log.warning("cluster listener lost the database: %s", _first_line(exc))
            self._drop_listener()

    def _listen_new(self):
        """LISTEN on the channels subscribed since the last look."""
        from psycopg import sql

        for channel in [self.channel(c) for c in list(self.handlers)]:
            if channel not in self._listening:
                self._listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self._listening.add(channel)

    def _drop_listener(self):
        """Close the listening connection, if any (it may be broken already)."""
        self.connected.clear()
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.close()
            except Exception:  # a connection the server ended may fail to close cleanly; it is gone either way
                pass

    def _deliver(self, wire, text):
        """Hand one message to the handlers of its channel; a failing handler is logged, the others still run."""
        for channel, handlers in list(self.handlers.items()):
            if self.channel(channel) != wire:
                continue
            for handler in list(handlers):
                try:
                    handler(json.loads(text))
                except Exception:
                    log.exception("handling a cluster message on %s", wire)
        if has_app_context():
            db.session.remove()  # the listener waits on: no handler's connection waits with it


def _first_line(exc):
    """Return the first line of an error (never a whole traceback, nor a connection string)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


bus = Bus()  # this process's


def subscribe(channel, handler):
    """Call handler(payload) for every message on channel in this process (INBOX: those sent to it alone)."""
    bus.subscribe(channel, handler)


def publish(channel, payload):
    """Send payload (a dict) to every process subscribed to channel; return whether it went out."""
    return bus.publish(channel, payload)


def send(name, payload):
    """Send payload to the process named name (host:pid) alone; return whether it went out."""
    return bus.publish(inbox_of(name), payload)


def reaches(name):
    """Say whether this process can send a message to the process named name."""
    return bus.reaches(name)


def start(app, name):
    """Start this process's bus on the app's database, under this process's name (host:pid); return it. The job
    "cluster" (app/jobs/table.py) steps it; it stops when that job stops."""
    return bus.start(app.config["SQLALCHEMY_DATABASE_URI"], name)


def step():
    """Take this process's messages of up to a second (the job "cluster")."""
    return bus.step()


def stop():
    """Stop this process's bus (when its job stops)."""
    bus.stop()
