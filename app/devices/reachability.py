"""Whether each device's port answers: a background TCP connect per device, bounded in number, time and rate.

One process of a cluster checks: the "port-check" job (app/jobs) takes a lease and runs check_round on a thread
of its own, never two at once, so a slow network delays no other job. A round takes the devices not checked for
PORT_CHECK_SECONDS, at most ROUND_LIMIT of them, CONCURRENCY at a time, each connect given up after TIMEOUT seconds.
Only the TCP handshake: nothing is sent, no credential is used.
"""
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import or_, select, update

from app.dbtypes import now_utc
from app.extensions import db

from .models import Device

CONCURRENCY = 16
ROUND_LIMIT = 500
TIMEOUT = 3.0


def answers(host, port, timeout=TIMEOUT):
    """Say whether host:port accepts a TCP connection within timeout seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def due(every):
    """Return (id, host, port) of the devices whose last check is older than every seconds (never checked first)."""
    stale = now_utc() - timedelta(seconds=every)
    return db.session.execute(
        select(Device.id, Device.host, Device.port)
        .where(or_(Device.port_checked_at.is_(None), Device.port_checked_at < stale))
        .order_by(Device.port_checked_at.is_not(None), Device.port_checked_at).limit(ROUND_LIMIT)).all()


def check_round(app):
    """Check the due devices and store what each answered; return how many were checked."""
    with app.app_context():
        targets = due(app.config["PORT_CHECK_SECONDS"])
        db.session.remove()  # no connection held while waiting on the network
    if not targets:
        return 0
    timeout = min(TIMEOUT, app.config["SSH_CONNECT_TIMEOUT"])
    with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="port-check") as pool:
        results = list(pool.map(lambda t: answers(t.host, t.port, timeout), targets))
    with app.app_context():
        checked_at = now_utc()
        for target, open_ in zip(targets, results):
            db.session.execute(update(Device).where(Device.id == target.id)
                               .values(port_open=open_, port_checked_at=checked_at))
        db.session.commit()
        db.session.remove()
    return len(targets)

