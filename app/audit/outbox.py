"""Waking the outbox's senders (syslog forwarding, alerts): a write that queued rows wakes them at once.

The senders run as continuous jobs (app/jobs): each waits on its own event from woken_on_queue(), with a timeout.
"""
import threading
from contextlib import contextmanager

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
