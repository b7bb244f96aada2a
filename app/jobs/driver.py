"""The one driver of background work: a Job says what runs, how often and where; the Driver runs what is due.

Periodic jobs run one after the other on a tick once a second, in the order of the jobs table, each in the app
context; a failure is logged at ERROR, kept in the job's state, and the tick goes on. A job with own_thread runs on
a thread of its own (never two rounds at once), so a slow network never delays the tick. A continuous job is
stepped on its own thread, again at once while its step says more is waiting, else when woken or after
idle_wait: a slow syslog server never delays heartbeats, and a slow webhook delays neither. Under gevent's
patched threading every thread here is a greenlet. The clock is injected, so tests advance time instead of
sleeping (Teleport's UploadCompleter has the same shape: config checked at construction, a serve loop, a
cluster-wide lock per job, a clock for tests).
"""
import logging
import threading
from contextlib import contextmanager
from datetime import timedelta

from app.extensions import db
from app.leases import Clock, take_lease

from . import status
from .job import ONCE, PROCESS, JobState

log = logging.getLogger("gatehouse.jobs")
TICK = 1.0  # seconds between two looks at the periodic jobs
ERROR_PAUSE = 1.0  # a continuous job whose step failed waits this long before the next


@contextmanager
def _own_event():
    """Give a continuous job that nothing wakes an event of its own (set only to stop it)."""
    yield threading.Event()


class Driver:
    """Run a list of jobs in this process: the periodic ones on a tick, each continuous one on its own thread."""

    def __init__(self, app, jobs, clock=None, worker=None):
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must differ: {names}")
        self.app, self.jobs, self.clock = app, list(jobs), clock or Clock()
        self.worker = worker  # the lease holder's name; None: this process's host:pid
        self.stopping = threading.Event()
        self.threads, self.wakers = [], []
        began = self.clock.monotonic()
        self.states = {job.name: JobState(next_due=began + job.first_delay) for job in self.jobs}

    def start(self):
        """Start the tick and the continuous jobs, each on a daemon thread; return self."""
        for job in self.jobs:
            if job.continuous:
                self._thread(job.name, self._serve_continuous, job)
        if any(not job.continuous for job in self.jobs):
            self._thread("jobs", self.serve)
        self.app.extensions["jobs"] = self  # what the summary page asks for report(); audit imports no jobs module
        return self

    def stop(self, join_seconds=0):
        """Stop every job at its next look (waiting up to join_seconds for their threads); nothing new starts."""
        self.stopping.set()
        for woken in list(self.wakers):
            woken.set()
        if join_seconds:
            for thread in self.threads:
                thread.join(join_seconds)
        if self.app.extensions.get("jobs") is self:
            del self.app.extensions["jobs"]

    def join(self):
        """Wait until the driver is stopped (a process that runs only jobs)."""
        self.stopping.wait()

    def serve(self):
        """Tick until stopped: run the periodic jobs that are due, then wait a tick."""
        while not self.stopping.is_set():
            self.run_due()
            self.clock.wait(self.stopping, TICK)

    def run_due(self):
        """Run once each periodic job that is due now, in table order (an own_thread one is started)."""
        now = self.clock.monotonic()
        with self.app.app_context():
            for job in self.jobs:
                state = self.states[job.name]
                if job.continuous or now < state.next_due or self.stopping.is_set():
                    continue
                state.next_due = float("inf") if job.every == ONCE else now + job.every
                if not self._may_run(job, state):
                    continue
                if job.own_thread:
                    self._start_round(job, state)
                else:
                    self._run(job, state)
            db.session.remove()

    def _may_run(self, job, state):
        """Return True if this process runs the job now: every process does, else the one that takes its lease."""
        if job.scope == PROCESS:
            return True
        try:
            taken = take_lease(job.lease_name, job.lease_seconds, holder=self.worker, now=self.clock.now())
        except Exception as exc:
            log.exception("%s lease failed", job.name)
            self._note_error(state, exc)
            return False
        state.lease_elsewhere = not taken
        return taken

    def _start_round(self, job, state):
        """Run an own_thread job on a thread of its own, unless its last round still runs."""
        if state.thread is not None and state.thread.is_alive():
            return
        state.thread = self._thread(job.name, self._run_in_context, job, state)

    def _run_in_context(self, job, state):
        """Run a job once in the app context (a thread of its own)."""
        with self.app.app_context():
            self._run(job, state)

    def _run(self, job, state):
        """Run a job once; return (its result, whether it failed). A failure is logged at ERROR and kept."""
        began = self.clock.monotonic()
        state.last_run = self.clock.now()
        try:
            return job.run(), False
        except Exception as exc:
            log.exception("%s failed", job.name)
            self._note_error(state, exc)
            return None, True
        finally:
            state.last_duration = self.clock.monotonic() - began

    def _note_error(self, state, exc):
        """Keep a failure's first line and time for the admins' view (never a traceback: it may quote values)."""
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        state.last_error = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
        state.last_error_at = self.clock.now()

    def _serve_continuous(self, job):
        """Step a continuous job until stopped: again at once while busy, else when woken or after idle_wait."""
        state = self.states[job.name]
        with (job.woken_by or _own_event)() as woken:
            self.wakers.append(woken)
            while not self.stopping.is_set():
                woken.clear()  # before the step: work queued during it ends the wait below at once
                with self.app.app_context():
                    busy, failed = self._run(job, state)
                if failed:
                    self.clock.wait(self.stopping, ERROR_PAUSE)
                if not busy and not self.stopping.is_set():
                    self.clock.wait(woken, job.idle_wait)
            self.wakers.remove(woken)
        if job.close is not None:
            job.close()

    def _thread(self, name, target, *args):
        """Start a daemon thread (a greenlet under gevent) for one part of the work; return it."""
        thread = threading.Thread(target=target, args=args, name=f"gatehouse-{name}", daemon=True)
        self.threads = [running for running in self.threads if running.is_alive()] + [thread]
        thread.start()
        return thread

    def report(self):
        """Return each job's schedule and state, for admins (in the app context: cluster jobs read their lease)."""
        return status.report(self)

    def next_run(self, job):
        """Return when this process next runs a periodic job (UTC), or None: continuous, or never again."""
        due = self.states[job.name].next_due
        if job.continuous or due == float("inf"):
            return None
        return self.clock.now() + timedelta(seconds=max(due - self.clock.monotonic(), 0))
