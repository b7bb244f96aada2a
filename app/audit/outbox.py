"""The loops that drain the outbox (syslog forwarding, alerts): started beside the maintenance loop, woken by writes."""
import logging
import threading
import time
from contextlib import contextmanager

log = logging.getLogger("gatehouse.audit")

# One event per sender loop of this process, set after a write that queued outbox rows.
_senders = []


def wake_senders():
    """Tell this process's sender loops that rows were queued (called once the event's transaction committed)."""
    for waiting in _senders:
        waiting.set()


@contextmanager
def woken_on_queue():
    """Give a sender loop an event set whenever this process queues outbox rows (it waits on it, with a timeout)."""
    waiting = threading.Event()
    _senders.append(waiting)
    try:
        yield waiting
    finally:
        _senders.remove(waiting)


def start(name, loop, app, stopping):
    """Run loop(app) in a daemon thread (a greenlet under gevent) until stopping is set."""
    stopping.clear()
    thread = threading.Thread(target=loop, args=(app,), name=f"gatehouse-{name}", daemon=True)
    thread.start()
    return thread


def run(app, sender, stopping, poll_seconds, name):
    """Step sender until stopping is set: at once after a write that queued rows, else every poll_seconds()."""
    with woken_on_queue() as queued:
        while not stopping.is_set():
            busy = False
            queued.clear()  # before the step: rows queued during it wake the wait below at once
            with app.app_context():
                try:
                    busy = sender.step()
                except Exception:
                    log.exception("%s failed", name)
                    time.sleep(1.0)
            if not busy:
                queued.wait(poll_seconds())
