"""Which process does the shared chores: its name, leases so one process at a time runs a job, and the clock
that times them (tests give their own, so they advance time instead of sleeping)."""
import os
import socket
import time
from datetime import datetime, timedelta

from sqlalchemy import String, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from app.dbtypes import UTCDateTime, now_utc
from app.extensions import db


class Lease(db.Model):
    """One lease row per job (e.g. "prune"): who holds it and until when."""

    __tablename__ = "audit_maintenance"  # the name it was created with; it holds every job's lease

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Clock:
    """The real clock: monotonic seconds for intervals, UTC time for rows, waits on an event with a timeout."""

    def monotonic(self):
        """Return seconds from an arbitrary start that never go back."""
        return time.monotonic()

    def now(self):
        """Return the current UTC time."""
        return now_utc()

    def wait(self, event, timeout):
        """Wait until event is set or timeout seconds passed; return whether it is set."""
        return event.wait(timeout)


def node_name():
    """Return this node's name: GATEHOUSE_NODE, else the host name (two nodes on one host need names of their own)."""
    return os.environ.get("GATEHOUSE_NODE") or socket.gethostname()


def worker_id():
    """Return node:pid of this process (computed each time: gunicorn forks after import)."""
    return f"{node_name()}:{os.getpid()}"


def take_lease(name, seconds, holder=None, now=None):
    """Return True if this process (or holder) may run the named job now (one holder at a time, across nodes)."""
    me, now = holder or worker_id(), now or now_utc()
    until = now + timedelta(seconds=seconds)
    with db.engine.begin() as conn:
        taken = conn.execute(
            update(Lease)
            .where(Lease.name == name)
            .where((Lease.lease_until.is_(None)) | (Lease.lease_until < now) | (Lease.holder == me))
            .values(holder=me, lease_until=until, last_run_at=now)
        ).rowcount
    if taken:
        return True
    try:
        with db.engine.begin() as conn:
            conn.execute(Lease.__table__.insert().values(name=name, holder=me, lease_until=until, last_run_at=now))
        return True
    except IntegrityError:
        return False


class KeptLease:
    """A lease held across the many steps of a sender: renewed every renew_seconds while held, and asked for only
    that often while another process holds it (asking every step would only load the database).

    on_taken runs after each renewal (a sender's periodic chores), on_lost when another process has it.
    """

    def __init__(self, name, seconds, renew_seconds, clock=None, on_taken=None, on_lost=None):
        if not 0 < renew_seconds < seconds:
            raise ValueError(f"lease {name}: renew every {renew_seconds} s, within its {seconds} s")
        self.name, self.seconds, self.renew_seconds = name, seconds, renew_seconds
        self.clock = clock or Clock()
        self.on_taken, self.on_lost = on_taken, on_lost
        self.until = self.next_try = 0.0

    def held(self):
        """Return True if this process holds the lease, renewing it when due."""
        now = self.clock.monotonic()
        if now < self.until - (self.seconds - self.renew_seconds):
            return True
        if now < self.next_try:
            return False
        if not take_lease(self.name, self.seconds, now=self.clock.now()):
            self.until, self.next_try = 0.0, now + self.renew_seconds
            if self.on_lost:
                self.on_lost()
            return False
        self.until = now + self.seconds
        if self.on_taken:
            self.on_taken()
        return True
