"""Terminal sessions on the database side: start/end/fail events, heartbeats, orphans.

The websocket route calls begin() once the shell is open, end() in its `finally`, and fail()
when no session could be opened. Everything that writes session.* audit events lives here.
"""
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from app.audit.events import FAILURE, AuditWriteError, record
from app.dbtypes import now_utc
from app.extensions import db

from .models import TerminalSession

log = logging.getLogger("gatehouse.sessions")

END_REASONS = ("client_closed", "remote_exit", "disconnected", "terminated", "server_restart", "lost", "error")
FAIL_REASONS = ("unreachable", "refused", "timeout", "auth_rejected", "bad_passphrase", "host_key_mismatch",
                "credentials_unreadable", "error")

# Sessions this process holds: session id -> Live. Guarded because heartbeats run beside the routes.
_live = {}
_live_lock = threading.Lock()


def worker_id():
    """Return host:pid of this process (computed each time: gunicorn forks after import)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Live:
    """A session held by this process; `bridge` has bytes_in, bytes_out and close(reason)."""

    id: str
    user_id: int
    actor: str
    target: str
    source_ip: str | None
    started_at: object
    bridge: object = field(repr=False)


def begin(user, device, source_ip, bridge):
    """Store the open session and record session.started; raise AuditWriteError to refuse it."""
    session_id = str(uuid.uuid4())
    row = TerminalSession(id=session_id, user_id=user.id, device_id=device.id, actor=user.username,
                          target=device.label, source_ip=source_ip, worker=worker_id())
    db.session.add(row)
    db.session.commit()
    try:
        record("session.started", f"started session with {device.label}", actor=user.username, user_id=user.id,
               target=device.label, session_id=session_id, source_ip=source_ip,
               details={"device_id": device.id, "ssh_user": device.username})
    except AuditWriteError:
        db.session.delete(row)
        db.session.commit()
        raise
    live = Live(session_id, user.id, user.username, device.label, source_ip, row.started_at, bridge)
    with _live_lock:
        _live[session_id] = live
    return live


def end(live, reason):
    """Mark the session ended (once, whoever comes first) and record session.ended."""
    with _live_lock:
        _live.pop(live.id, None)
    bytes_in, bytes_out = live.bridge.bytes_in, live.bridge.bytes_out
    _close_row(live.id, reason, bytes_in, bytes_out, live.actor, live.user_id, live.target, live.source_ip,
               live.started_at)


def _close_row(session_id, reason, bytes_in, bytes_out, actor, user_id, target, source_ip, started_at):
    """End one session row if it is still open, and write its session.ended event."""
    ended_at = now_utc()
    values = {"ended_at": ended_at, "end_reason": reason, "bytes_in": bytes_in, "bytes_out": bytes_out}
    with db.engine.begin() as conn:
        closed = conn.execute(
            update(TerminalSession)
            .where(TerminalSession.id == session_id, TerminalSession.ended_at.is_(None))
            .values(**values)
        ).rowcount
    if not closed:
        return False  # somebody else (a sweeper, another path) ended it first
    details = {"reason": reason, "duration_s": round((ended_at - started_at).total_seconds(), 3),
               "bytes_in": bytes_in, "bytes_out": bytes_out}
    record("session.ended", f"stopped session with {target}", actor=actor, user_id=user_id, target=target,
           session_id=session_id, source_ip=source_ip, details=details, strict=False)
    return True


def fail(user, device, reason, message, **details):
    """Record that a session could not be opened (never raises)."""
    record("session.failed", f"could not start session with {device.label}: {message}", outcome=FAILURE,
           actor=user.username, user_id=user.id, target=device.label, details={"reason": reason, **details},
           strict=False)


def live_sessions():
    """Return the sessions this process holds."""
    with _live_lock:
        return list(_live.values())


def heartbeat():
    """Refresh heartbeat and byte counters of every session this process holds."""
    sessions = live_sessions()
    if not sessions:
        return 0
    now = now_utc()
    with db.engine.begin() as conn:
        for live in sessions:
            conn.execute(
                update(TerminalSession)
                .where(TerminalSession.id == live.id, TerminalSession.ended_at.is_(None))
                .values(heartbeat_at=now, bytes_in=live.bridge.bytes_in, bytes_out=live.bridge.bytes_out)
            )
        doomed = set(conn.scalars(select(TerminalSession.id).where(
            TerminalSession.id.in_([live.id for live in sessions]), TerminalSession.terminate_requested)))
    for live in sessions:
        if live.id in doomed:  # an admin asked, possibly on another worker or node
            live.bridge.close("terminated")
    return len(sessions)


def terminate(row, why):
    """End an open session on an admin's word: flag it for its holder and record session.terminated."""
    request_termination(row.id)
    record("session.terminated", f"terminated the session of {row.actor} with {row.target}", target=row.target,
           session_id=row.id, details={"user": row.actor, "source_ip": row.source_ip, "why": why})


def terminate_user(user_id, why):
    """End every open session of one user (disabled or deleted)."""
    rows = db.session.scalars(select(TerminalSession).where(TerminalSession.user_id == user_id,
                                                            TerminalSession.ended_at.is_(None))).all()
    for row in rows:
        terminate(row, why)
    return len(rows)


def request_termination(session_id):
    """Ask the holder of an open session to end it; end it at once if this process holds it."""
    with db.engine.begin() as conn:
        flagged = conn.execute(
            update(TerminalSession)
            .where(TerminalSession.id == session_id, TerminalSession.ended_at.is_(None))
            .values(terminate_requested=True)
        ).rowcount
    with _live_lock:
        live = _live.get(session_id)
    if live is not None:
        live.bridge.close("terminated")
    return bool(flagged)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans(stale_after):
    """End open sessions nobody holds: a dead process on this host, or a heartbeat older than stale_after."""
    host = socket.gethostname()
    me = worker_id()
    cutoff = now_utc() - stale_after
    rows = db.session.execute(select(TerminalSession).where(TerminalSession.ended_at.is_(None))).scalars().all()
    closed = 0
    for row in rows:
        if row.worker == me:
            continue
        row_host, _, pid = row.worker.rpartition(":")
        if row_host == host and pid.isdigit():
            # On this host the process table is the truth: a live holder keeps its sessions even if
            # its heartbeat lags (a busy worker), a dead one means the server restarted.
            if _pid_alive(int(pid)):
                continue
            reason = "server_restart"
        elif row.heartbeat_at < cutoff:
            reason = "lost"
        else:
            continue
        closed += _close_row(row.id, reason, row.bytes_in, row.bytes_out, row.actor, row.user_id, row.target,
                             row.source_ip, row.started_at)
    db.session.remove()
    return closed


def close_all(reason="server_restart"):
    """Close every session this process holds (clean shutdown): SSH side first, then the rows."""
    for live in live_sessions():
        try:
            live.bridge.close(reason)
        except Exception:  # one broken bridge must not keep the others open
            log.exception("closing session %s", live.id)
        end(live, reason)


def stale_after(app):
    """Return how old a heartbeat may get before its session counts as lost."""
    return timedelta(seconds=3 * app.config["SESSION_HEARTBEAT_SECONDS"])
