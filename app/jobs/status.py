"""What admins see of the background jobs: each job's schedule, and this process's last run, next run and last
error; for a job one process of the cluster (or machine) runs, who holds its lease and when it last took it."""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.extensions import db
from app.leases import Lease, worker_id

from .job import CONTINUOUS, ONCE


@dataclass(frozen=True)
class JobStatus:
    """One row of the admins' jobs table."""

    name: str
    every: str  # in words: "every 10 s", "at start-up", "continuous (woken, else every 0.5 s)"
    scope: str
    continuous: bool
    last_run: datetime | None
    last_duration: float | None
    next_run: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    running: bool  # an own_thread round runs now
    lease_elsewhere: bool  # another process held the lease at this process's last try
    holder: str | None = None  # the lease's holder (host:pid), for jobs with a lease
    held_here: bool = False  # this process holds it
    lease_taken_at: datetime | None = None  # when the holder last took or renewed it


def every_words(job):
    """Say how often a job runs, in short words."""
    if job.every == ONCE:
        return "at start-up"
    if job.every == CONTINUOUS:
        return f"continuous (woken, else every {job.idle_wait:g} s)"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if job.every >= size and job.every % size == 0:
            return f"every {job.every // size:g} {unit}"
    return f"every {job.every:g} s"


def report(driver):
    """Return a JobStatus per job of a driver, in table order (needs the app context for the lease table)."""
    names = {job.lease_name for job in driver.jobs if job.lease_name}
    leases = {row.name: row for row in db.session.scalars(select(Lease).where(Lease.name.in_(names)))} \
        if names else {}
    rows, me = [], driver.worker or worker_id()
    for job in driver.jobs:
        state, lease = driver.states[job.name], leases.get(job.lease_name)
        rows.append(JobStatus(
            name=job.name, every=every_words(job), scope=job.scope, continuous=job.continuous, last_run=state.last_run,
            last_duration=state.last_duration, next_run=driver.next_run(job), last_error=state.last_error,
            last_error_at=state.last_error_at, running=state.thread is not None and state.thread.is_alive(),
            lease_elsewhere=state.lease_elsewhere, holder=lease.holder if lease else None,
            held_here=lease is not None and lease.holder == me,
            lease_taken_at=lease.last_run_at if lease else None))
    return rows
