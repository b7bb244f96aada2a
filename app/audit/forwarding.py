"""Forwarding of the audit trail to syslog servers: RFC 5424 messages, their transports and the one sender.

Every event is queued in audit_outbox (one row per target) in the transaction that writes it. One process
of a cluster, holding the "forwarding" lease, sends each target its rows in id order and deletes them only
once they are confirmed (see docs/audit.md, "Forwarding"): delivery is at least once and in order.
The formatter is written here: PyPI's RFC 5424 formatters (rfc5424-logging-handler, last release 2019;
syslog-rfc5424-formatter, 2022) format logging records, not an event's fields, and no longer move.
"""
import logging
import os
import select as io_select
import socket
import ssl
from datetime import timezone

from sqlalchemy import delete, func, select

from config import SYSLOG_FACILITIES
from app.audit.catalogue import SEVERITY_ORDER
from app.audit.events import record
from app.audit.models import ALERT_TARGET, AuditEvent, AuditOutbox
from app.dbtypes import now_utc
from app.extensions import db
from app.leases import Clock, KeptLease
from app.text import reveal_text

log = logging.getLogger("gatehouse.forwarding")

# 32473 is the private enterprise number RFC 5612 reserves for documentation: a placeholder until a site
# registers its own; receivers match on the whole SD-ID "gatehouse@32473", which stays stable.
SD_ID = "gatehouse@32473"
SEVERITIES = dict(zip(SEVERITY_ORDER, (6, 5, 4, 2)))  # syslog numbers: informational, notice, warning, critical
SD_FIELDS = ("id", "actor", "user_id", "outcome", "severity", "source_ip", "target", "session_id", "request_id",
             "hash", "prev_hash")
BOM = b"\xef\xbb\xbf"

BATCH = 500  # rows read and sent per step and target
# An idle sender looks for new rows this often; an event written by this process wakes it at once, one written
# by another process of the cluster waits at most this long.
POLL_SECONDS = 0.2
# A TCP write that returned is kept queued this long: a receiver that dies sooner is seen (its end of the
# socket becomes readable) and everything since the oldest unconfirmed row is sent again.
CONFIRM_SECONDS = 1.0
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0  # reconnects wait 0.5 s, doubling up to 30 s
LEASE_SECONDS, LEASE_RENEW_SECONDS = 15, 5  # a sender that dies is replaced within 15 s
CONNECT_TIMEOUT = 5.0


def _escape(value):
    """Escape an SD-PARAM value as RFC 5424 asks (backslash, double quote, closing bracket), hidden characters shown."""
    # Hidden characters first (a typed name's U+2028 would start a new line in the receiver's file, U+202E reverse
    # what a reader sees): as \uXXXX, the backslash doubled; then RFC 5424's own escapes on top.
    return reveal_text(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _token(value, limit):
    """Return a header field as printable US-ASCII without spaces, at most limit long, or the nil value."""
    text = "".join(c for c in str(value or "") if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


def format_message(event, facility="authpriv", hostname=None, procid=None):
    """Return one event as an RFC 5424 message (bytes, without framing)."""
    pri = SYSLOG_FACILITIES[facility] * 8 + SEVERITIES.get(event.severity, 5)
    occurred = event.occurred_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    params = " ".join(f'{name}="{_escape(getattr(event, name))}"' for name in SD_FIELDS
                      if getattr(event, name) is not None)
    header = (f"<{pri}>1 {occurred} {_token(hostname or socket.gethostname(), 255)} gatehouse "
              f"{_token(procid or os.getpid(), 128)} {_token(event.action, 32)} [{SD_ID} {params}] ")
    return header.encode() + BOM + reveal_text(event.message).encode("utf-8")


class Target:
    """One syslog server: its address, its connection, and how far it has been sent and confirmed."""

    def __init__(self, url, ca_file=None):
        self.url = url
        self.scheme, rest = url.split("://", 1)
        self.host, port = rest.rsplit(":", 1)
        self.port = int(port)
        self.ca_file = ca_file
        self.sock = None
        self.sent_to = 0  # highest event id written on this connection
        self.pending = []  # (event id, monotonic time of the write) not yet confirmed
        self.backoff = 0.0
        self.next_try = 0.0

    def connect(self):
        """Open the connection (TLS verifies the server's certificate and name)."""
        if self.scheme == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.connect((self.host, self.port))
        else:
            sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
            if self.scheme == "tls":
                context = ssl.create_default_context(cafile=self.ca_file)
                sock = context.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(30)
            self.sock = sock
        self.sent_to, self.pending = 0, []

    def close(self):
        """Drop the connection; the next one starts again from the oldest unconfirmed row."""
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock, self.sent_to, self.pending = None, 0, []

    def alive(self):
        """Return False if the server closed its end (a syslog server never writes, so only a close is read)."""
        if self.scheme == "udp":
            return True
        readable, _, _ = io_select.select([self.sock], [], [], 0)
        if not readable:
            return True
        # Readable may also be TLS housekeeping (a TLS 1.3 session ticket): read it to tell the two apart.
        self.sock.setblocking(False)
        try:
            return self.sock.recv(1) != b""
        except (ssl.SSLWantReadError, BlockingIOError):
            return True
        except OSError:
            return False
        finally:
            self.sock.settimeout(30)

    def send(self, messages):
        """Write messages, octet-counted (RFC 6587) on TCP and TLS, one datagram each on UDP."""
        if self.scheme == "udp":
            for message in messages:
                self.sock.send(message)
        else:
            self.sock.sendall(b"".join(b"%d " % len(message) + message for message in messages))


class Sender:
    """Drain the outbox to every target while this process holds the forwarding lease."""

    def __init__(self, app, clock=None):
        self.app = app
        self.targets = [Target(url, app.config.get("SYSLOG_CA_FILE")) for url in app.config["SYSLOG_TARGETS"]]
        self.facility = app.config.get("SYSLOG_FACILITY", "authpriv")
        self.clock = clock or Clock()
        # Another process sending: ours would only duplicate, so every connection closes.
        self.lease = KeptLease("forwarding", LEASE_SECONDS, LEASE_RENEW_SECONDS, self.clock,
                               on_taken=self.check_stall, on_lost=self.close)

    def step(self):
        """Send what is due to each target; return True if any target had a full batch (more is waiting)."""
        if not self.lease.held():
            return False
        busy = False
        for target in self.targets:
            busy |= self.pump(target)
        return busy

    def close(self):
        """Close every connection (the lease went to another process, or the sender stops)."""
        for target in self.targets:
            target.close()

    def pump(self, target):
        """Confirm, then send the next batch to one target; a failure closes it and backs off."""
        now = self.clock.monotonic()
        if target.sock is None:
            if now < target.next_try:
                return False
            try:
                target.connect()
            except (OSError, ssl.SSLError) as exc:
                target.backoff = min(max(target.backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
                target.next_try = now + target.backoff
                log.warning("syslog %s unreachable, retry in %.1fs: %s", target.url, target.backoff, exc)
                return False
            log.info("syslog %s connected", target.url)
        try:
            if not target.alive():
                raise ConnectionError("the server closed the connection")
            self.confirm(target, now)
            rows = db.session.execute(
                select(AuditEvent).join(AuditOutbox, AuditOutbox.event_id == AuditEvent.id)
                .where(AuditOutbox.target == target.url, AuditOutbox.event_id > target.sent_to)
                .order_by(AuditOutbox.event_id).limit(BATCH)
            ).scalars().all()
            if rows:
                target.send([format_message(row, self.facility) for row in rows])
                target.sent_to = rows[-1].id
                target.pending.append((target.sent_to, self.clock.monotonic()))
                if target.scheme == "udp":  # nothing to wait for: UDP never says
                    self.confirm(target, float("inf"))
            target.backoff = 0.0
            return len(rows) == BATCH
        except (OSError, ssl.SSLError) as exc:
            log.warning("syslog %s lost, resending from the oldest unconfirmed event: %s", target.url, exc)
            target.close()
            target.backoff = min(max(target.backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
            target.next_try = now + target.backoff
            return False
        finally:
            db.session.remove()

    def confirm(self, target, now):
        """Delete the rows written long enough ago on a connection that is still open."""
        done = 0
        while target.pending and now - target.pending[0][1] >= CONFIRM_SECONDS:
            done = target.pending.pop(0)[0]
        if done:
            with db.engine.begin() as conn:
                conn.execute(delete(AuditOutbox).where(AuditOutbox.target == target.url,
                                                       AuditOutbox.event_id <= done))

    def check_stall(self):
        """Record forwarding.stalled once when the oldest queued event is too old, forwarding.resumed when drained."""
        depth, age = queue_status()
        last = db.session.execute(
            select(AuditEvent.action).where(AuditEvent.action.in_(("forwarding.stalled", "forwarding.resumed")))
            .order_by(AuditEvent.id.desc()).limit(1)
        ).scalar()
        limit = self.app.config["SYSLOG_STALL_SECONDS"]
        if age is not None and age > limit and last != "forwarding.stalled":
            record("forwarding.stalled", f"{depth} audit events wait for syslog, the oldest for {age:.0f} s",
                   details={"depth": depth, "age_seconds": round(age), "targets": list(self.app.config["SYSLOG_TARGETS"])},
                   strict=False)
        elif last == "forwarding.stalled" and (age is None or age < limit):
            record("forwarding.resumed", "syslog forwarding caught up", details={"depth": depth}, strict=False)
        db.session.remove()


def queue_status():
    """Return (events waiting for at least one target, age in seconds of the oldest), age None when empty."""
    depth, oldest = db.session.execute(
        select(func.count(func.distinct(AuditOutbox.event_id)), func.min(AuditOutbox.queued_at))
        .where(AuditOutbox.target != ALERT_TARGET)
    ).one()
    return depth, None if oldest is None else (now_utc() - oldest).total_seconds()

