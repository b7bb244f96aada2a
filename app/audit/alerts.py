"""Alerts: chosen audit events POSTed as signed JSON to ALERT_WEBHOOK_URL, from the outbox, by one process.

An event that alerts (events.alerts) gets an audit_outbox row for ALERT_TARGET in the transaction that writes
it. One process of a cluster, holding the "alerts" lease, POSTs each due row and deletes it on a 2xx answer;
anything else waits its back-off and is tried again, until the row is a day old (see docs/audit.md, "Alerts").
The webhook's address often carries a token, so it appears in no log line, event, error or page: failures are
described by fixed words ("HTTP 500", "connection refused").
"""
import hashlib
import hmac
import http.client
import json
import logging
import socket
import ssl
import time
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import delete, func, select, update

from app.audit.catalogue import CATALOGUE
from app.audit.events import plain, record
from app.audit.models import ALERT_TARGET, AuditEvent, AuditOutbox
from app.audit.query import time_arg
from app.dbtypes import now_utc
from app.extensions import db
from app.leases import Clock, KeptLease
from app.text import json_reveal

log = logging.getLogger("gatehouse.alerts")

BATCH = 50  # due rows read per step
# An idle sender looks for due rows this often; an alert written by this process wakes it at once.
POLL_SECONDS = 0.5
TIMEOUT = 5.0  # seconds to connect, and for each read of the answer
BACKOFF_MIN, BACKOFF_MAX = 1.0, 300.0  # a failed alert waits 1 s, doubling up to 5 min
GIVE_UP_SECONDS = 24 * 3600  # an alert not delivered a day after its event is dropped (alert.dropped)
# A sender that dies is replaced within 30 s. The lease is renewed every 5 s, also between POSTs, so a try that
# uses every timeout (connect, TLS, send, read: 5 s each) still ends inside it.
LEASE_SECONDS, LEASE_RENEW_SECONDS = 30, 5
TIMESTAMP_HEADER = "X-Gatehouse-Timestamp"
SIGNATURE_HEADER = "X-Gatehouse-Signature"
EVENT_ID_HEADER = "X-Gatehouse-Event-Id"


def backoff(attempts):
    """Return the seconds a row waits after its attempts-th failed try: 1, 2, 4 … up to 300."""
    return min(BACKOFF_MIN * 2 ** (max(attempts, 1) - 1), BACKOFF_MAX)


def sign(secret, timestamp, body):
    """Return the signature header's value: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def payload(event, config):
    """Return the JSON body of one event's alert (bytes)."""
    body = plain(event)
    body.update(hash=event.hash, prev_hash=event.prev_hash, label=CATALOGUE[event.action][0],
                host=socket.gethostname())
    if config.get("PUBLIC_URL"):
        body["link"] = config["PUBLIC_URL"] + _viewer_path(event)
    # Hidden characters (a typed name's U+202E) as JSON escapes: the same values once parsed, visible when read.
    return json_reveal(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))).encode()


def _viewer_path(event):
    """Return the viewer's path filtered to this event: its action within its second."""
    args = {"action": event.action, "since": time_arg(event.occurred_at),
            "until": time_arg(event.occurred_at, round_up=True)}
    return current_app.url_map.bind("localhost").build("audit.index", args)


def _reason(exc):
    """Describe a failed POST in a few fixed words: never the address, which may carry a token."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):  # socket.timeout too
        return "timed out"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, socket.gaierror):
        return "host name not resolved"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate not trusted"
    if isinstance(exc, ssl.SSLError):
        return "TLS error"
    if isinstance(exc, http.client.HTTPException):
        return "not an HTTP answer"
    if isinstance(exc, ValueError):
        return "address refused by the HTTP client"
    return f"network error ({type(exc).__name__})"


class Webhook:
    """The receiver: where to POST and how to sign."""

    def __init__(self, url, secret):
        parts = urlsplit(url)
        self.https = parts.scheme.lower() == "https"
        self.host, self.port = parts.hostname, parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.secret = secret

    def post(self, event_id, body):
        """POST one alert; return None on a 2xx answer, else a short reason ("HTTP 500", "timed out")."""
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "Gatehouse-Alerts",
                   TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(self.secret, timestamp, body),
                   EVENT_ID_HEADER: str(event_id)}
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            conn.request("POST", self.path, body=body, headers=headers)
            status = conn.getresponse().status  # a redirect is an answer like any other: not followed
        except (OSError, http.client.HTTPException, ValueError) as exc:  # ValueError: an address http.client refuses
            return _reason(exc)
        finally:
            conn.close()
        return None if 200 <= status < 300 else f"HTTP {status}"


class Sender:
    """POST the due alerts in id order while this process holds the alerts lease.

    A failed row waits its own back-off. One failure does not stop a step (the receiver may refuse only that
    event); two in a row do, and no row is tried until the earlier of the two is due again: a receiver that is
    down gets two requests per back-off, not one per queued alert, and the alerts behind them keep their order.
    """

    def __init__(self, app, clock=None):
        self.app = app
        self.webhook = Webhook(app.config["ALERT_WEBHOOK_URL"], app.config["ALERT_WEBHOOK_SECRET"])
        self.clock = clock or Clock()
        # Each renewal also drops the alerts too old to send.
        self.lease = KeptLease("alerts", LEASE_SECONDS, LEASE_RENEW_SECONDS, self.clock, on_taken=self.drop_expired)
        self.paused_until = 0.0

    def step(self):
        """Send what is due; return True if a full batch went out (more may be waiting)."""
        if not self.lease.held() or self.clock.monotonic() < self.paused_until:
            return False
        events = self.due()
        first_wait = None  # the back-off of a failure just before, if the last try failed
        for event, attempts in events:
            if not self.lease.held():  # renewed between POSTs: a slow receiver must not let the lease lapse
                return False
            error = self.webhook.post(event.id, payload(event, self.app.config))
            if error is None:
                self.delivered(event)
                first_wait = None
                continue
            wait = self.failed(event, attempts + 1, error)
            if first_wait is not None:  # the receiver, not one event: pause until the first of the two is due
                self.paused_until = self.clock.monotonic() + min(wait, first_wait)
                return False
            first_wait = wait
        return len(events) == BATCH

    def due(self):
        """Return up to BATCH (event, attempts) whose row is due, oldest event first."""
        now = self.clock.now()
        try:
            rows = db.session.execute(
                select(AuditEvent, AuditOutbox.attempts).join(AuditOutbox, AuditOutbox.event_id == AuditEvent.id)
                .where(AuditOutbox.target == ALERT_TARGET,
                       AuditOutbox.next_attempt_at.is_(None) | (AuditOutbox.next_attempt_at <= now))
                .order_by(AuditOutbox.event_id).limit(BATCH)
            ).all()
            for event, _ in rows:
                db.session.expunge(event)  # read now: no transaction stays open while a POST waits
            return [tuple(row) for row in rows]
        finally:
            db.session.remove()

    def delivered(self, event):
        """Delete the row of an alert the receiver took."""
        with db.engine.begin() as conn:
            conn.execute(delete(AuditOutbox).where(AuditOutbox.target == ALERT_TARGET,
                                                   AuditOutbox.event_id == event.id))
        log.info("alert for event %d (%s) delivered", event.id, event.action)

    def failed(self, event, attempts, error):
        """Note a failed try on the row and schedule the next; return the seconds it waits."""
        wait = backoff(attempts)
        with db.engine.begin() as conn:
            conn.execute(update(AuditOutbox).where(AuditOutbox.target == ALERT_TARGET,
                                                   AuditOutbox.event_id == event.id)
                         .values(attempts=attempts, last_error=error[:200],
                                 next_attempt_at=self.clock.now() + timedelta(seconds=wait)))
        log.warning("alert webhook: event %d (%s) not delivered (%s), try %d, next in %.1f s",
                    event.id, event.action, error, attempts, wait)
        return wait

    def drop_expired(self):
        """Drop the alerts of events older than GIVE_UP_SECONDS, each recorded as alert.dropped."""
        cutoff = self.clock.now() - timedelta(seconds=GIVE_UP_SECONDS)
        try:
            rows = db.session.execute(
                select(AuditOutbox.event_id, AuditOutbox.attempts, AuditOutbox.last_error, AuditEvent.action)
                .outerjoin(AuditEvent, AuditEvent.id == AuditOutbox.event_id)  # pruned meanwhile: dropped too
                .where(AuditOutbox.target == ALERT_TARGET, AuditOutbox.queued_at < cutoff)
                .order_by(AuditOutbox.event_id).limit(BATCH)
            ).all()
        finally:
            db.session.remove()
        for event_id, attempts, error, action in rows:
            with db.engine.begin() as conn:
                gone = conn.execute(delete(AuditOutbox).where(AuditOutbox.target == ALERT_TARGET,
                                                              AuditOutbox.event_id == event_id)).rowcount
            if not gone:
                continue
            why, what = error or "never tried", action or "pruned from the trail"
            log.warning("alert for event %d (%s) dropped after %d failed tries: %s", event_id, what, attempts, why)
            record("alert.dropped", f"alert for event {event_id} ({what}) dropped: not delivered after "
                   f"{attempts} tries (last: {why})",
                   details={"event_id": event_id, "event_action": action, "attempts": attempts, "last_error": error},
                   strict=False)


def queue_status():
    """Return (alerts waiting, age in seconds of the oldest or None, the newest failure's reason or None)."""
    depth, oldest = db.session.execute(
        select(func.count(), func.min(AuditOutbox.queued_at)).where(AuditOutbox.target == ALERT_TARGET)).one()
    error = db.session.scalar(
        select(AuditOutbox.last_error).where(AuditOutbox.target == ALERT_TARGET, AuditOutbox.last_error.is_not(None))
        .order_by(AuditOutbox.event_id.desc()).limit(1))
    return depth, None if oldest is None else (now_utc() - oldest).total_seconds(), error

