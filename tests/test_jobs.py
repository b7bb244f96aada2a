"""Background jobs: one table, one driver on an injected clock, leases across processes, and what admins see."""
import re
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.audit import health, outbox
from app.extensions import db
from app.jobs import table
from app.jobs.driver import Driver
from app.jobs.job import CLUSTER, CONTINUOUS, MACHINE, ONCE, PROCESS, Job
from app.leases import Lease
from tests.clocks import FakeClock
from tests.support import AuthActions, wait_for


class Counter:
    """A job's work that counts its runs and may fail on the runs it is told to."""

    def __init__(self, fail_on=()):
        self.runs, self.fail_on = 0, set(fail_on)

    def __call__(self):
        self.runs += 1
        if self.runs in self.fail_on:
            raise RuntimeError(f"run {self.runs} broke\nsecond line")
        return False


def test_a_job_runs_when_due_and_not_before(app):
    clock = FakeClock()
    often, rarely, later, once = Counter(), Counter(), Counter(), Counter()
    driver = Driver(app, [Job("often", often, 1), Job("rarely", rarely, 10), Job("later", later, 5, first_delay=30),
                          Job("once", once, ONCE)], clock)
    driver.run_due()
    assert (often.runs, rarely.runs, later.runs, once.runs) == (1, 1, 0, 1)
    driver.run_due()  # no time passed: nothing is due
    assert (often.runs, rarely.runs, later.runs, once.runs) == (1, 1, 0, 1)
    for _ in range(30):
        clock.advance(1)
        driver.run_due()
    assert (often.runs, rarely.runs, later.runs, once.runs) == (31, 4, 1, 1)
    with app.app_context():
        rows = {row.name: row for row in driver.report()}
    assert rows["rarely"].last_run == clock.now() and rows["rarely"].every == "every 10 s"
    assert (rows["rarely"].next_run - clock.now()).total_seconds() == 10
    assert rows["once"].next_run is None and rows["once"].every == "at start-up"


def test_a_cluster_job_runs_in_one_of_two_processes_by_the_lease_table(app):
    clock = FakeClock()
    ran = {"a": Counter(), "b": Counter()}
    drivers = {name: Driver(app, [Job("prune", ran[name], 10, CLUSTER, lease_seconds=9)], clock,
                            worker=f"host:{name}") for name in ran}
    for _ in range(3):
        drivers["a"].run_due()
        drivers["b"].run_due()
        clock.advance(10)
    assert (ran["a"].runs, ran["b"].runs) == (3, 0)  # a renews its lease at each run; b never gets it
    with app.app_context():
        lease = db.session.get(Lease, "prune")
        assert lease.holder == "host:a" and lease.last_run_at == clock.now() - timedelta(seconds=10)
        row = {row.name: row for row in drivers["b"].report()}["prune"]
    assert row.lease_elsewhere and row.holder == "host:a" and row.last_run is None
    clock.advance(10)  # a stopped running: its lease ran out
    drivers["b"].run_due()
    assert (ran["a"].runs, ran["b"].runs) == (3, 1)
    drivers["a"].run_due()
    assert ran["a"].runs == 3  # b holds it now


def test_a_failure_is_kept_and_logged_and_the_tick_goes_on(app, caplog):
    clock = FakeClock()
    broken, after = Counter(fail_on={1}), Counter()
    driver = Driver(app, [Job("broken", broken, 1), Job("after", after, 1)], clock)
    driver.run_due()
    assert after.runs == 1  # the job after the failing one still ran
    assert any(r.levelname == "ERROR" and "broken failed" in r.getMessage() for r in caplog.records)
    with app.app_context():
        row = {row.name: row for row in driver.report()}["broken"]
    assert row.last_error == "RuntimeError: run 1 broke" and row.last_error_at == clock.now()
    clock.advance(1)
    driver.run_due()
    assert (broken.runs, after.runs) == (2, 2)  # and the next tick runs it again


def test_a_continuous_job_is_woken_by_an_outbox_write_and_stepped_again_while_busy(app):
    clock = FakeClock()  # never advanced: only a wake makes the job step again
    steps, busy = [], [True]

    def step():
        steps.append(clock.monotonic())
        return busy.pop() if busy else False

    driver = Driver(app, [Job("sender", step, CONTINUOUS, idle_wait=3600, woken_by=outbox.woken_on_queue)], clock)
    driver.start()
    try:
        wait_for(lambda: len(steps) == 2)  # busy once: stepped again at once
        time.sleep(0.2)
        assert len(steps) == 2  # then it waits: an hour on a clock that does not move
        outbox.wake_senders()
        wait_for(lambda: len(steps) == 3)
    finally:
        driver.stop(join_seconds=5)
    assert not any(thread.is_alive() for thread in driver.threads)


def test_an_own_thread_job_never_delays_the_tick_and_never_runs_twice_at_once(app):
    clock = FakeClock()
    release, rounds, ticks = threading.Event(), Counter(), Counter()

    def slow_round():
        rounds()
        release.wait(10)

    driver = Driver(app, [Job("ports", slow_round, 10, own_thread=True), Job("tick", ticks, 1)], clock)
    driver.run_due()
    for _ in range(20):
        clock.advance(1)
        driver.run_due()
    assert ticks.runs == 21 and rounds.runs == 1  # still running at 10 and 20 s: not started again
    with app.app_context():
        assert {row.name: row for row in driver.report()}["ports"].running
    release.set()
    wait_for(lambda: not driver.states["ports"].thread.is_alive())
    clock.advance(10)
    driver.run_due()
    wait_for(lambda: rounds.runs == 2)


@pytest.mark.parametrize("kwargs, problem", [
    ({"every": 0}, "every must be"),
    ({"every": "hourly"}, "every must be"),
    ({"every": 5, "scope": "planet"}, "scope must be"),
    ({"every": 5, "scope": MACHINE, "lease_seconds": 4}, "named for its host"),
    ({"every": 5, "scope": CLUSTER}, "lease_seconds above 0"),
    ({"every": 5, "scope": CLUSTER, "lease": "x" * 33, "lease_seconds": 4}, "32 characters"),
    ({"every": 5, "first_delay": -1}, "first_delay"),
    ({"every": 5, "woken_by": outbox.woken_on_queue}, "only a continuous job"),
    ({"every": CONTINUOUS, "own_thread": True}, "always has its own thread"),
])
def test_a_wrong_job_is_refused_when_made(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        Job("x", lambda: None, **kwargs)


def test_the_table_keeps_every_job_its_lease_and_interval(app):
    app.config.update(SYSLOG_TARGETS=("tcp://127.0.0.1:9",), ALERT_WEBHOOK_URL="http://127.0.0.1:9/hook",
                      PORT_CHECK_SECONDS=300)
    jobs = {job.name: job for job in table.app_jobs(app, FakeClock())}
    assert {job.lease_name for job in jobs.values() if job.scope != PROCESS} == {
        "retention", "verify", health.lease_name(), "prune", "checkpoint", "review", "port-check", "forwarding",
        "alerts"}
    every_second = [name for name, job in jobs.items() if job.every == 1]
    assert every_second == ["shutdown", "end-requests", "relayed-watches", "recordings", "unwritten-ends",
                            "expired-log-ins", "log-in-blocks", "lost-audit-writes"]
    config = app.config
    assert (jobs["verify"].every, jobs["verify"].first_delay) == (config["AUDIT_VERIFY_SECONDS"], 600)
    assert jobs["heartbeat"].every == config["SESSION_HEARTBEAT_SECONDS"]
    assert jobs["orphan-sweep"].every == 3 * config["SESSION_HEARTBEAT_SECONDS"]
    assert (jobs["prune"].every, jobs["prune"].lease_seconds) == (3600, 3595)
    assert (jobs["port-check"].every, jobs["port-check"].own_thread) == (10, True)
    assert jobs["storage"].scope == MACHINE and jobs["alerts"].every == CONTINUOUS
    assert jobs["cluster"].every == jobs["watch-relay"].every == CONTINUOUS  # the bus's messages act at once


def test_the_summary_shows_this_process_jobs_with_their_times(app):
    client = app.test_client()
    AuthActions(client).login()
    assert "No background jobs run in this process" in client.get("/audit/summary").get_data(as_text=True)
    clock = FakeClock()
    secret_url = "http://127.0.0.1:9/hook/tok-123"
    app.config["ALERT_WEBHOOK_URL"] = secret_url

    def fails():
        raise OSError(f"could not reach {secret_url}")

    driver = Driver(app, [Job("checkpoint", lambda: None, 300, CLUSTER, lease_seconds=299),
                          Job("flaky", fails, 60)], clock)
    driver.run_due()
    app.extensions["jobs"] = driver  # as start() does
    try:
        html = client.get("/audit/summary").get_data(as_text=True)
    finally:
        del app.extensions["jobs"]
    assert "Background jobs" in html and "No background jobs" not in html
    row = re.search(r'<tr data-job="checkpoint">.*?</tr>', html, re.S).group(0)
    assert "every 5 min, one per cluster" in row and row.count(" UTC</time>") >= 3  # lease, last run, next run
    flaky = re.search(r'<tr data-job="flaky">.*?</tr>', html, re.S).group(0)
    assert "OSError: could not reach (webhook)" in flaky and "tok-123" not in html


def test_start_registers_the_driver_and_stop_ends_its_threads(tmp_path):
    from tests.support import make_app

    app = make_app(tmp_path, SYSLOG_TARGETS=("tcp://127.0.0.1:9",))
    driver = table.start(app, clock=FakeClock(), names={"forwarding", "heartbeat"})
    try:
        assert app.extensions["jobs"] is driver
        assert [job.name for job in driver.jobs] == ["heartbeat", "forwarding"]
    finally:
        table.stop(app)
        for thread in driver.threads:
            thread.join(5)
    assert "jobs" not in app.extensions and not any(thread.is_alive() for thread in driver.threads)
    with app.app_context():
        assert db.session.scalars(select(Lease.name)).all() in ([], ["forwarding"])
