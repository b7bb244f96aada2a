"""A background job as a value: what runs, how often (seconds, once at start-up, or continuously), where in a
cluster (every process, one per machine, one per cluster by a lease), checked when made; and what a process knows
of its runs."""
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

# Where a job runs: in every process, in one process per machine, in one process of the cluster.
PROCESS, MACHINE, CLUSTER = "process", "machine", "cluster"
# How often, besides a number of seconds: once at start-up; stepped again and again (woken, or after idle_wait).
ONCE, CONTINUOUS = "once", "continuous"


@dataclass(frozen=True)
class Job:
    """One background job, checked when made: a wrong one stops the start, not a tick in the night.

    A periodic job in MACHINE or CLUSTER scope runs only after the driver took its lease (named `lease`, for a
    cluster job its name by default) for lease_seconds. A continuous job keeps its own lease (leases.KeptLease):
    it must renew it between the slow calls of one step, so its scope and lease here describe it.
    """

    name: str
    run: Callable[[], object]
    every: float | str  # seconds between runs, ONCE or CONTINUOUS
    scope: str = PROCESS
    lease: str = ""
    lease_seconds: float = 0
    first_delay: float = 0  # seconds after the start before the first run
    own_thread: bool = False
    idle_wait: float = 1.0  # continuous: the longest wait after a step that found nothing to do
    woken_by: Callable | None = None  # continuous: a context manager giving an event set when work arrives
    close: Callable | None = None  # continuous: called once when the driver stops

    def __post_init__(self):
        problem = _problem(self)
        if problem:
            raise ValueError(f"job {self.name!r}: {problem}")

    @property
    def continuous(self):
        """Say whether the job is stepped continuously rather than run on the tick."""
        return self.every == CONTINUOUS

    @property
    def lease_name(self):
        """Return the name of the job's lease ('' for a job every process runs)."""
        return "" if self.scope == PROCESS else self.lease or self.name


def _problem(job):
    """Return what is wrong with a job, or None."""
    periodic = job.every not in (ONCE, CONTINUOUS)
    if not job.name or not callable(job.run):
        return "needs a name and something to run"
    if job.scope not in (PROCESS, MACHINE, CLUSTER):
        return f"scope must be {PROCESS}, {MACHINE} or {CLUSTER}, not {job.scope!r}"
    if periodic and (isinstance(job.every, bool) or not isinstance(job.every, (int, float)) or job.every <= 0):
        return f"every must be seconds above 0, {ONCE!r} or {CONTINUOUS!r}, not {job.every!r}"
    if job.scope == MACHINE and not job.lease:
        return "a machine job needs a lease named for its host"
    if job.scope != PROCESS and not job.continuous and job.lease_seconds <= 0:
        return "a shared job needs lease_seconds above 0"
    if len(job.lease_name) > 32:
        return "lease names are 32 characters at most"
    if job.first_delay < 0 or job.idle_wait <= 0:
        return "first_delay must be 0 or more, idle_wait above 0"
    if not job.continuous and (job.woken_by or job.close):
        return "only a continuous job is woken or closed"
    if job.continuous and job.own_thread:
        return "a continuous job always has its own thread"
    return None


@dataclass
class JobState:
    """What this process knows of one job: when it last ran and for how long, when it runs next, its last error."""

    next_due: float  # on the clock's monotonic scale
    last_run: datetime | None = None
    last_duration: float | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    lease_elsewhere: bool = False  # another process held the lease at the last try
    thread: threading.Thread | None = None  # own_thread: the round running now
