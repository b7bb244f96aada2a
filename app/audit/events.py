"""The one write path of the audit trail: record(...), and the report of events it could not write."""
import logging
import threading
import time

from flask import current_app, g, has_request_context, request
from flask_login import current_user
from sqlalchemy import exc as sa_exc

from app.audit.catalogue import CATALOGUE, SEVERITY_ORDER
from app.audit.chain import HASHED_FIELDS, link_hash
from app.audit.models import ALERT_TARGET
from app.audit.outbox import wake_senders
from app.audit.writes import NEXT_LINK, commit_link
from app.blocking import release_idle_connection
from app.dbtypes import iso_utc, now_utc
from app.extensions import db
from app.metrics import AUDIT_EVENTS, AUDIT_WRITE_FAILURES, AUDIT_WRITE_SECONDS
from app.text import reveal_text

log = logging.getLogger("gatehouse.audit")

SUCCESS, FAILURE = "success", "failure"


# Field names whose values must never be written into details.
_SECRET_WORDS = ("password", "passphrase", "private_key", "secret", "token")

# Writers in one process queue here before the database lock: under gevent, SQLite's
# busy-wait sleeps in C and would block the greenlet that holds the lock.
_process_lock = threading.Lock()


# A busy pool is waited out this many pool timeouts before an event is given up (and logged at ERROR).
_POOL_ATTEMPTS = 3


class AuditWriteError(RuntimeError):
    """An audit event could not be written."""


def plain(row, fields=HASHED_FIELDS):
    """Return the given fields of a row (mapping or event) as plain JSON values: time as UTC ISO, details a dict."""
    get = row.__getitem__ if hasattr(row, "__getitem__") else lambda name: getattr(row, name)
    values = {name: get(name) for name in fields}
    values["occurred_at"] = iso_utc(values["occurred_at"])
    if "details" in values:
        values["details"] = values["details"] or {}
    return values


def chain_hash(prev_hash, row):
    """Return the hash a row (time as a datetime) carries after prev_hash; the form is app.audit.chain's."""
    return link_hash(prev_hash, plain(row))


def _scrub(details):
    """Drop any value whose key names a secret: defence in depth, callers never pass one."""
    clean = {}
    for key, value in (details or {}).items():
        if any(word in key.lower() for word in _SECRET_WORDS):
            clean[key] = "[redacted]"
        elif isinstance(value, dict):
            clean[key] = _scrub(value)
        else:
            clean[key] = value
    return clean


def _request_facts():
    """Return actor, user id, source IP, user agent and request id from the current request."""
    if not has_request_context():
        return {}
    facts = {
        "source_ip": request.remote_addr,
        "user_agent": (request.user_agent.string or "")[:256] or None,
        "request_id": g.get("request_id"),
    }
    if current_user and current_user.is_authenticated:
        facts["actor"] = current_user.username
        facts["user_id"] = current_user.id
    return facts


def _connect():
    """Return a connection for a write; a full pool is waited out a few times before giving up."""
    for attempt in range(1, _POOL_ATTEMPTS):
        try:
            return db.engine.connect()
        except sa_exc.TimeoutError:
            log.warning("audit write waits for a database connection (attempt %d of %d)", attempt, _POOL_ATTEMPTS)
    return db.engine.connect()  # the last timeout reaches record(), which logs the lost event at ERROR


def _append(row):
    """Give row the next id, the time and its hashes, and write it at the end of the chain."""
    # Decided before the lock: the event goes to every syslog target, and the alert webhook if it alerts.
    config = current_app.config
    targets = list(config.get("SYSLOG_TARGETS") or ()) + ([ALERT_TARGET] if alerts(row, config) else [])
    # Connection first, then the lock: a writer never waits for the pool while holding the lock. commit_link()
    # commits; a failure before it rolls back before the lock is let go.
    with _connect() as conn, _process_lock, conn.begin():
        head = conn.execute(NEXT_LINK).one()  # from here to the commit, other writers wait: keep it short
        row["id"] = head.last_id
        row["occurred_at"] = now_utc()
        row["prev_hash"] = head.last_hash
        row["hash"] = chain_hash(head.last_hash, row)
        # Same transaction as the event: its outbox rows exist exactly when it does.
        commit_link(conn, row, targets)
    if targets:  # committed: wake this process's senders now rather than at their next poll
        wake_senders()


def alerts(row, config):
    """Return True if the event goes to the alert webhook: its action is listed, or its severity is."""
    if not config.get("ALERT_WEBHOOK_URL") or row["action"] == "alert.dropped":  # it says the webhook failed
        return False
    chosen = config.get("ALERT_ACTIONS") or ()
    if row["action"] in chosen:
        return True
    # A user created as an admin by someone is "a user made admin" as much as a role change is (the first admin,
    # made by the system at the first start, is not).
    if row["action"] == "user.created" and (row["details"] or {}).get("admin") and row["actor"] != "system" \
            and "user.role_changed" in chosen:
        return True
    rank = SEVERITY_ORDER.index(row["severity"])
    return any(word in SEVERITY_ORDER and rank >= SEVERITY_ORDER.index(word) for word in chosen)


def record(action, message, *, outcome=SUCCESS, actor=None, user_id=None, target=None,
           session_id=None, details=None, source_ip=None, strict=True):
    """Append one event to the audit trail; raise AuditWriteError (strict) or log it at ERROR."""
    row = _build(action, message, outcome=outcome, actor=actor, user_id=user_id, target=target,
                 session_id=session_id, details=details, source_ip=source_ip)
    # The write takes its own connection: the request's idle one goes back first, so no request holds two.
    release_idle_connection()
    started = time.perf_counter()
    try:
        _append(row)
    except Exception as exc:
        AUDIT_WRITE_FAILURES.inc()
        log.error("audit write failed: action=%s actor=%s error=%s", action, reveal_text(row["actor"]), exc)
        _lost.add(action, exc, strict)
        if strict:
            raise AuditWriteError(str(exc)) from exc
        return None
    AUDIT_WRITE_SECONDS.observe(time.perf_counter() - started)
    AUDIT_EVENTS.labels(action, outcome).inc()
    # The process's own log (often journald, then syslog) gets a typed name's hidden characters as escapes too.
    log.info("audit %s %s actor=%s ip=%s: %s", action, outcome, reveal_text(row["actor"]), row["source_ip"],
             reveal_text(message))
    if _lost.count:
        report_lost()
    return row


def _build(action, message, *, outcome, actor, user_id, target, session_id, details, source_ip):
    """Return the row of one event, before it has its place in the chain."""
    if action not in CATALOGUE:
        raise ValueError(f"unknown audit action {action!r}")
    if outcome not in (SUCCESS, FAILURE):
        raise ValueError(f"unknown outcome {outcome!r}")
    facts = _request_facts()
    _, _, on_success, on_failure = CATALOGUE[action]
    return {
        "actor": (actor or facts.get("actor") or "system")[:64],
        "user_id": user_id if user_id is not None else facts.get("user_id"),
        "action": action,
        "outcome": outcome,
        "severity": on_success if outcome == SUCCESS else on_failure,
        "message": message,
        "source_ip": source_ip or facts.get("source_ip"),
        "user_agent": facts.get("user_agent"),
        "request_id": facts.get("request_id"),
        "target": target,
        "session_id": session_id,
        "details": _scrub(details),
    }


class _Lost:
    """What this process could not write to the trail, kept until an audit.write_failed event says so."""

    KEEP = 20  # the first few actions are named one by one; the count covers them all

    def __init__(self):
        self.lock = threading.Lock()
        self._clear()

    def _clear(self):
        """Forget everything noted."""
        self.count, self.strict, self.first, self.last, self.actions, self.error = 0, 0, None, None, {}, None

    def add(self, action, exc, strict):
        """Note one event that was not written (strict: the action it described was refused too)."""
        with self.lock:
            now = iso_utc(now_utc())
            self.count += 1
            self.strict += bool(strict)
            self.first = self.first or now
            self.last = now
            self.actions[action] = self.actions.get(action, 0) + 1
            self.error = _reason(exc)

    def take(self):
        """Return what was noted as event details (None if nothing) and start afresh."""
        with self.lock:
            noted = None
            if self.count:
                top = sorted(self.actions.items(), key=lambda item: -item[1])[:self.KEEP]
                noted = {"count": self.count, "refused": self.strict, "first_at": self.first,
                         "last_at": self.last, "actions": dict(top), "error": self.error}
            self._clear()
            return noted

    def give_back(self, noted):
        """Put details that could not be written back, merged with anything noted since."""
        with self.lock:
            self.count += noted["count"]
            self.strict += noted["refused"]
            self.first = min(filter(None, (self.first, noted["first_at"])))
            self.last = self.last or noted["last_at"]
            for action, count in noted["actions"].items():
                self.actions[action] = self.actions.get(action, 0) + count
            self.error = self.error or noted["error"]


_lost = _Lost()


def _reason(exc):
    """Return the kind and first line of a write error, without the SQL and its parameters."""
    text = str(getattr(exc, "orig", None) or exc).split("\n", 1)[0].split("[SQL", 1)[0].strip()
    return f"{type(exc).__name__}: {text}"[:200]


def report_lost():
    """Write audit.write_failed for the events this process could not write; keep them if it fails again."""
    noted = _lost.take()
    if noted is None:
        return None
    row = _build("audit.write_failed",
                 f"{noted['count']} audit events could not be written between {noted['first_at']} and "
                 f"{noted['last_at']} ({noted['error']})", outcome=SUCCESS, actor="system", user_id=None,
                 target=None, session_id=None, details=noted, source_ip=None)
    for fact in ("user_id", "user_agent", "request_id", "source_ip"):  # the process's report, not the request's
        row[fact] = None
    try:
        _append(row)
    except Exception as exc:
        log.error("audit write failed again, %d unwritten events still to report: %s", noted["count"], _reason(exc))
        _lost.give_back(noted)
        return None
    log.warning("audit trail writable again: recorded the loss of %d events", noted["count"])
    return row
