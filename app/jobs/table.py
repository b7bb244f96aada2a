"""The jobs table: every background job of the app, its interval, scope and lease taken from the settings; and the
start and stop of this process's driver (gunicorn's worker hooks call them).

Leases keep the names they always had ("retention", "verify", the machine's "storage:<host>", "prune",
"checkpoint", "review", "port-check", and the senders' "forwarding" and "alerts"), so a cluster mixing old and
new processes still runs each job once.
"""
from functools import partial

from app import cluster
from app.audit import alerts, forwarding, health, outbox, review
from app.audit.checkpoints import checkpoint
from app.audit.events import report_lost
from app.audit.retention import prune
from app.auth import logins, throttle
from app.devices import reachability
from app.leases import Clock, worker_id
from app.terminals import orphans, registry, relay

from .driver import Driver
from .job import CLUSTER, CONTINUOUS, MACHINE, ONCE, Job

REVIEW_CHECK_SECONDS = 600  # how often an unreviewed period is checked against AUDIT_REVIEW_DAYS
PORT_ROUND_SECONDS = 10  # how often devices due a port check are looked for (a new device is seen within this)
VERIFY_FIRST_AFTER = 600  # the scheduled verify waits this long after a start (a restart would walk the chain again)


def app_jobs(app, clock=None, is_alive=lambda: True):
    """Return every background job of the app, in the order a tick runs them."""
    return [
        # Once per start, by one process: a changed retention setting is recorded.
        Job("retention", health.check_retention, ONCE, CLUSTER, lease_seconds=60),
        *_messages(), *_every_second(is_alive), *_periodic(app.config), *_port_check(app),
        *_senders(app, clock or Clock()),
    ]


def _messages():
    """The cluster bus and the watches it relays: each stepped on its own thread, as messages come."""
    return [
        # Listens (PostgreSQL) or takes this process's own messages (SQLite); ends, log-ins, watches act at once.
        Job("cluster", cluster.step, CONTINUOUS, close=cluster.stop),
        # Holder: serves watches asked by other processes, sends each what it shows, woken by their output.
        Job("watch-relay", relay.step, CONTINUOUS, woken_by=relay.woken),
    ]


def _every_second(is_alive):
    """The work of every tick in every process: ends asked for anywhere reach this process's terminals quickly."""
    return [
        Job("shutdown", partial(_end_if_stopping, is_alive), 1),
        Job("end-requests", registry.end_requested, 1),  # the fallback of the cluster bus's message
        Job("relayed-watches", relay.check, 1),  # watches this process relays from another: log-ins, beats
        Job("recordings", registry.flush_recordings, 1),  # a killed process loses at most this second
        Job("unwritten-ends", registry.retry_unwritten, 1),
        Job("expired-log-ins", logins.expire_due, 1),  # one indexed query; ends reach terminals at once
        Job("log-in-blocks", throttle.sweep, 1),  # an address block that ran out is reported once
        Job("lost-audit-writes", report_lost, 1),  # as soon as the trail takes writes again
    ]


def _end_if_stopping(is_alive):
    """End this process's sessions at once when it is shutting down, not after the grace period."""
    if not is_alive():
        registry.close_all("server_restart")


def _periodic(config):
    """The jobs on their own intervals: verify, storage, heartbeat, orphan sweep, prune, checkpoint, review."""
    verify_every, storage_every = config["AUDIT_VERIFY_SECONDS"], config["STORAGE_CHECK_SECONDS"]
    beat, prune_every = config["SESSION_HEARTBEAT_SECONDS"], config["AUDIT_PRUNE_INTERVAL_SECONDS"]
    checkpoint_every = config["AUDIT_CHECKPOINT_SECONDS"]
    # The verify's lease is nearly as long as its interval: a cluster verifies once per interval whatever restarts.
    verify = [Job("verify", health.scheduled_verify, verify_every, CLUSTER, lease_seconds=max(verify_every - 60, 1),
                  first_delay=min(verify_every, VERIFY_FIRST_AFTER))] if verify_every else []
    return verify + [
        # One process per machine looks (the disks are the machine's); the events say which folder.
        Job("storage", health.check_storage, storage_every, MACHINE, lease=health.lease_name(),
            lease_seconds=max(storage_every - 1, 1)),
        Job("heartbeat", registry.heartbeat, beat),
        Job("orphan-sweep", partial(orphans.sweep_orphans, orphans.stale_after(config)), 3 * beat),
        Job("prune", prune, prune_every, CLUSTER, lease_seconds=max(prune_every - 5, 5)),
        # checkpoint() itself skips a head that has not moved.
        Job("checkpoint", checkpoint, checkpoint_every, CLUSTER, lease_seconds=max(checkpoint_every - 1, 1)),
        # check_overdue() itself records at most once a day per period.
        Job("review", review.check_overdue, REVIEW_CHECK_SECONDS, CLUSTER, lease_seconds=REVIEW_CHECK_SECONDS - 10),
    ]


def _port_check(app):
    """The port check, if on: one process of a cluster, a round on its own thread so it never delays the tick."""
    if not app.config["PORT_CHECK_SECONDS"]:
        return []
    return [Job("port-check", partial(reachability.check_round, app), PORT_ROUND_SECONDS, CLUSTER,
                lease_seconds=PORT_ROUND_SECONDS - 1, own_thread=True)]


def _senders(app, clock):
    """The outbox's senders, each set up: syslog forwarding and the alert webhook, woken by outbox writes."""
    jobs = []
    if app.config.get("SYSLOG_TARGETS"):
        jobs.append(_sender("forwarding", forwarding, forwarding.Sender(app, clock)))
    if app.config.get("ALERT_WEBHOOK_URL"):
        jobs.append(_sender("alerts", alerts, alerts.Sender(app, clock)))
    return jobs


def _sender(name, module, sender):
    """Return the continuous job of one sender (it keeps its own lease: it renews it within a step)."""
    return Job(name, sender.step, CONTINUOUS, CLUSTER, lease_seconds=module.LEASE_SECONDS,
               idle_wait=module.POLL_SECONDS, woken_by=outbox.woken_on_queue, close=getattr(sender, "close", None))


def start(app, is_alive=lambda: True, clock=None, names=None):
    """Start this process's background jobs (all, or only those named); return the driver."""
    clock = clock or Clock()
    jobs = [job for job in app_jobs(app, clock, is_alive) if names is None or job.name in names]
    if any(job.name == "cluster" for job in jobs):
        cluster.start(app, worker_id())  # before the driver: its first step listens already
    return Driver(app, jobs, clock).start()


def stop(app):
    """Stop this process's jobs and close the terminals it still holds, on a clean shutdown."""
    driver = app.extensions.get("jobs")
    if driver is not None:
        driver.stop()
    with app.app_context():
        registry.close_all("server_restart")
