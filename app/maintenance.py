"""Background work of one serving process: heartbeats, end requests, orphan sweep, audit pruning, checkpoints,
the overdue review check."""
import logging
import threading
import time

from app.audit import alerts, forwarding, health, review
from app.audit.checkpoints import checkpoint
from app.audit.events import report_lost
from app.audit.retention import prune
from app.auth import sessions as log_ins
from app.auth import throttle
from app.devices import reachability
from app.extensions import db
from app.leases import take_lease
from app.terminals import live, records

log = logging.getLogger("gatehouse.maintenance")
_stop = threading.Event()
REVIEW_CHECK_SECONDS = 600  # how often an unreviewed period is checked against AUDIT_REVIEW_DAYS
PORT_ROUND_SECONDS = 10  # how often devices due a port check are looked for (a new device is seen within this)


def start(app, is_alive=lambda: True):
    """Start the periodic work for this process (a greenlet under gevent's patched threading)."""
    _stop.clear()
    thread = threading.Thread(target=_loop, args=(app, is_alive), name="gatehouse-maintenance", daemon=True)
    thread.start()
    forwarding.start(app)  # its own loop: a slow syslog server never delays heartbeats
    alerts.start(app)  # its own loop too: a slow webhook delays neither heartbeats nor syslog
    return thread


def stop(app):
    """Close what this process still holds, on a clean shutdown."""
    _stop.set()
    forwarding.stop()
    alerts.stop()
    with app.app_context():
        live.close_all("server_restart")


def _loop(app, is_alive):
    """Tick every second: heartbeats, orphan sweep, pruning and checkpoints when each is due, shutdown at once."""
    beat = app.config["SESSION_HEARTBEAT_SECONDS"]
    prune_every = app.config["AUDIT_PRUNE_INTERVAL_SECONDS"]
    checkpoint_every = app.config["AUDIT_CHECKPOINT_SECONDS"]
    storage_every = app.config["STORAGE_CHECK_SECONDS"]
    verify_every = app.config["AUDIT_VERIFY_SECONDS"]
    # Not at start-up (a restart would walk the chain again): ten minutes in, then under a lease as long as the
    # interval, so a cluster verifies once per interval whatever restarts.
    next_verify = time.monotonic() + min(verify_every, 600) if verify_every else float("inf")
    next_beat = next_sweep = next_prune = next_checkpoint = next_storage = next_review = next_ports = 0.0  # at start-up
    with app.app_context():
        if _guarded("retention lease", take_lease, "retention", 60):
            _guarded("retention", health.check_retention)
    while not _stop.is_set():
        now = time.monotonic()
        with app.app_context():
            if not is_alive():  # shutting down: end sessions now, not after the grace period
                _guarded("shutdown", live.close_all, "server_restart")
            _guarded("watch", live.watch)  # every second: ends asked for anywhere reach us quickly
            _guarded("recordings", live.flush_recordings)  # a killed process loses at most this second
            _guarded("unwritten ends", live.retry_unwritten)
            _guarded("expired log-ins", log_ins.expire_due)  # one indexed query; ends reach terminals at once
            _guarded("log-in blocks", throttle.sweep)  # an address block that ran out is reported once
            _guarded("lost audit writes", report_lost)  # as soon as the trail takes writes again
            if now >= next_verify:
                if _guarded("verify lease", take_lease, "verify", max(verify_every - 60, 1)):
                    _guarded("verify", health.scheduled_verify)
                next_verify = now + verify_every
            if now >= next_storage:
                # One process per machine looks (the disks are the machine's); the events say which folder.
                if _guarded("storage lease", take_lease, health.lease_name(), max(storage_every - 1, 1)):
                    _guarded("storage", health.check_storage)
                next_storage = now + storage_every
            if now >= next_beat:
                _guarded("heartbeat", live.heartbeat)
                next_beat = now + beat
            if now >= next_sweep:
                _guarded("orphan sweep", records.sweep_orphans, records.stale_after(app.config))
                next_sweep = now + 3 * beat
            if now >= next_prune:
                if _guarded("prune lease", take_lease, "prune", max(prune_every - 5, 5)):
                    _guarded("prune", prune)
                next_prune = now + prune_every
            if now >= next_checkpoint:
                # One process of a cluster signs; checkpoint() itself skips a head that has not moved.
                if _guarded("checkpoint lease", take_lease, "checkpoint", max(checkpoint_every - 1, 1)):
                    _guarded("checkpoint", checkpoint)
                next_checkpoint = now + checkpoint_every
            if now >= next_review:
                # One process of a cluster looks; check_overdue() itself records at most once a day per period.
                if _guarded("review lease", take_lease, "review", REVIEW_CHECK_SECONDS - 10):
                    _guarded("review overdue", review.check_overdue)
                next_review = now + REVIEW_CHECK_SECONDS
            if now >= next_ports and app.config["PORT_CHECK_SECONDS"]:
                # One process of a cluster checks; the round runs on its own thread, never delaying this loop.
                if _guarded("port check lease", take_lease, "port-check", PORT_ROUND_SECONDS - 1):
                    _guarded("port check", reachability.start_round, app)
                next_ports = now + PORT_ROUND_SECONDS
            db.session.remove()
        _stop.wait(1.0)


def _guarded(what, func, *args):
    """Run one job; a failure is logged at ERROR and the loop goes on."""
    try:
        return func(*args)
    except Exception:
        log.exception("%s failed", what)
        return None
