"""Which process does the shared chores: its name, and leases so one process at a time runs a job."""
import os
import socket
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


def worker_id():
    """Return host:pid of this process (computed each time: gunicorn forks after import)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def take_lease(name, seconds):
    """Return True if this process may run the named job now (one holder at a time, across nodes)."""
    me, now = worker_id(), now_utc()
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
