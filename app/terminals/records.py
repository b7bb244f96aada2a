"""Terminal sessions in the database: their rows and session.* events, end requests, orphans.

Everything that writes a session.* audit event lives here; the live side (app.terminals.live)
calls it. Ending a session from anywhere is one path: request_end() flags the row, and the
process that holds it closes it within a second.
"""
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, func, insert, select, update

from app.access import readable_sessions, usable_by, visible_sessions
from app.audit.events import FAILURE, AuditWriteError, record
from app.audit.models import AuditEvent
from app.audit.query import escape_like
from app.dbtypes import iso_utc, now_utc
from app.devices.models import Device
from app.devices.secrets import recording_key
from app.extensions import db
from app.leases import worker_id

from . import recording
from .models import SessionCommand, TerminalSession

log = logging.getLogger("gatehouse.sessions")


@dataclass(frozen=True)
class Facts:
    """What the end of a session needs to know about its start (a row or a live terminal)."""

    id: str
    user_id: int | None
    actor: str
    target: str
    source_ip: str | None
    started_at: datetime

    @classmethod
    def of(cls, row):
        """Return the facts of a TerminalSession row."""
        return cls(row.id, row.user_id, row.actor, row.target, row.source_ip, row.started_at)


def open_row(user, device, source_ip, login_id):
    """Store the open session and record session.started; raise (AuditWriteError or other) to refuse it."""
    row = TerminalSession(id=str(uuid.uuid4()), user_id=user.id, device_id=device.id, actor=user.username,
                          target=device.label, source_ip=source_ip, worker=worker_id(), login_session_id=login_id)
    db.session.add(row)
    db.session.execute(update(Device).where(Device.id == device.id).values(last_used_at=now_utc()))
    db.session.commit()
    facts = Facts.of(row)
    try:
        record("session.started", f"started session with {device.label}", actor=user.username, user_id=user.id,
               target=device.label, session_id=facts.id, source_ip=source_ip,
               details={"device_id": device.id, "ssh_user": device.username})
    except AuditWriteError:
        db.session.delete(row)
        db.session.commit()
        raise
    return facts


def close_row(facts, reason, bytes_in, bytes_out, ended_at, row_closed=False, recording=None):
    """End the row if still open and record session.ended, with the recording's seal; raise when either fails.

    Returns (row_closed, written): a caller that retries passes row_closed back, so the event of
    a row it already closed is written with the original end time.
    """
    if not row_closed:
        with db.engine.begin() as conn:
            closed = conn.execute(
                update(TerminalSession)
                .where(TerminalSession.id == facts.id, TerminalSession.ended_at.is_(None))
                .values(ended_at=ended_at, end_reason=reason, bytes_in=bytes_in, bytes_out=bytes_out)
            ).rowcount
        if not closed:
            return True, False  # somebody else (a sweeper, another path) ended it first
    details = {"reason": reason, "duration_s": round((ended_at - facts.started_at).total_seconds(), 3),
               "bytes_in": bytes_in, "bytes_out": bytes_out, "ended_at": iso_utc(ended_at)}
    if recording:
        details["recording"] = recording  # sha256 and size of the plaintext: the chain now covers it
    record("session.ended", f"stopped session with {facts.target}", actor=facts.actor, user_id=facts.user_id,
           target=facts.target, session_id=facts.id, source_ip=facts.source_ip, details=details)
    return True, True


def fail(user, device, reason, message):
    """Record that a session could not be opened (never raises)."""
    record("session.failed", f"could not start session with {device.label}: {message}", outcome=FAILURE,
           actor=user.username, user_id=user.id, target=device.label, details={"reason": reason}, strict=False)


def recording_store():
    """Return the store of session recordings."""
    return recording.LocalStore(current_app.config["RECORDINGS_DIR"])


def save_commands(facts, commands):
    """Store commands found in a session: [(offset in seconds, text)]."""
    with db.engine.begin() as conn:
        conn.execute(insert(SessionCommand), [
            {"session_id": facts.id, "occurred_at": facts.started_at + timedelta(seconds=offset), "offset_s": offset,
             "text": text} for offset, text in commands])


def recording_stopped(facts, state, error, max_mb):
    """Record that a session's recording stopped early: it could not be written, or reached its cap."""
    if state == "limited":
        record("recording.limited", f"recording of the session with {facts.target} stopped at {max_mb} MB",
               actor=facts.actor, user_id=facts.user_id, target=facts.target, session_id=facts.id,
               source_ip=facts.source_ip, details={"max_mb": max_mb}, strict=False)
    else:
        record("recording.failed", f"recording of the session with {facts.target} failed: {error}", outcome=FAILURE,
               actor=facts.actor, user_id=facts.user_id, target=facts.target, session_id=facts.id,
               source_ip=facts.source_ip, details={"error": error}, strict=False)


def recover_recording(session_id):
    """Repair the recording of a session whose process died and return its seal (None if not recorded)."""
    try:
        return recording.recover(recording_store(), session_id, recording_key())
    except (OSError, recording.RecordingError) as exc:
        log.error("recording of session %s cannot be recovered: %s", session_id, exc)
        return {"state": "failed", "error": f"cannot be recovered: {exc}"}


def heartbeat(counters):
    """Refresh heartbeat and byte counters of open sessions: counters is [(id, bytes_in, bytes_out)]."""
    now = now_utc()
    with db.engine.begin() as conn:
        for session_id, bytes_in, bytes_out in counters:
            conn.execute(update(TerminalSession)
                         .where(TerminalSession.id == session_id, TerminalSession.ended_at.is_(None))
                         .values(heartbeat_at=now, bytes_in=bytes_in, bytes_out=bytes_out))


def end_requests(session_ids):
    """Return {session id: reason} of the given sessions that someone asked to end."""
    if not session_ids:
        return {}
    with db.engine.connect() as conn:
        rows = conn.execute(select(TerminalSession.id, TerminalSession.terminate_reason).where(
            TerminalSession.id.in_(session_ids), TerminalSession.terminate_requested)).all()
    return {row.id: row.terminate_reason or "terminated" for row in rows}


def request_end(reason, *conditions):
    """Flag the open sessions matching conditions to end with reason; return their ids."""
    with db.engine.begin() as conn:
        ids = list(conn.scalars(select(TerminalSession.id).where(TerminalSession.ended_at.is_(None), *conditions)))
        if ids:
            conn.execute(update(TerminalSession).where(TerminalSession.id.in_(ids), TerminalSession.ended_at.is_(None))
                         .values(terminate_requested=True, terminate_reason=reason))
    return ids


def end_sessions_without_access(reason="access_revoked"):
    """Flag every open terminal whose user may no longer use its device (a grant, a team, a folder or tag went);
    return their ids. Their holders close them within a second, the tab saying why."""
    allowed = exists(select(Device.id).where(and_(Device.id == TerminalSession.device_id,
                                                  usable_by(TerminalSession.user_id))))
    return request_end(reason, ~allowed)


def end_login(login_id, reason):
    """Flag every open terminal of a log-in that ended; return their ids."""
    return request_end(reason, TerminalSession.login_session_id == login_id)


def terminate(row, by):
    """End an open session on an admin's word: flag it for its holder and record session.terminated."""
    request_end("terminated", TerminalSession.id == row.id)
    record("session.terminated", f"terminated the session of {row.actor} with {row.target}", target=row.target,
           session_id=row.id, details={"user": row.actor, "source_ip": row.source_ip, "by": by})


def watch_started(facts, by):
    """Record that someone started watching a session."""
    record("session.watch_started", f"started watching the session of {facts.actor} with {facts.target}",
           target=facts.target, session_id=facts.id, details={"user": facts.actor, "by": by})


def watch_ended(facts, by, reason, words):
    """Record that someone stopped watching a session, and why (a reason code and its words)."""
    record("session.watch_ended", f"stopped watching the session of {facts.actor} with {facts.target} — {words}",
           target=facts.target, session_id=facts.id, details={"user": facts.actor, "by": by, "reason": reason},
           strict=False)


def visible_open(user):
    """Return the open sessions user may see (visible_sessions), oldest first."""
    query = visible_sessions(user).where(TerminalSession.ended_at.is_(None)).order_by(TerminalSession.started_at)
    return db.session.scalars(query).all()


def _pid_alive(pid):
    """Say whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _orphan_reason(row, host, me, cutoff):
    """Return why an open row is an orphan (server_restart, lost), or None while its holder lives."""
    if row.worker == me:
        return None
    row_host, _, pid = row.worker.rpartition(":")
    if row_host == host and pid.isdigit():
        # On this host the process table is the truth: a live holder keeps its sessions even if
        # its heartbeat lags (a busy worker), a dead one means the server restarted.
        return None if _pid_alive(int(pid)) else "server_restart"
    return "lost" if row.heartbeat_at < cutoff else None


def sweep_orphans(stale_after):
    """End open sessions nobody holds: a dead process on this host, or a heartbeat older than stale_after."""
    host, me, cutoff = socket.gethostname(), worker_id(), now_utc() - stale_after
    rows = db.session.scalars(select(TerminalSession).where(TerminalSession.ended_at.is_(None))).all()
    closed = 0
    for row in rows:
        reason = _orphan_reason(row, host, me, cutoff)
        if reason:
            # The end time is the last sign of life, not the moment somebody noticed.
            _, written = close_row(Facts.of(row), reason, row.bytes_in, row.bytes_out, row.heartbeat_at,
                                   recording=recover_recording(row.id))
            closed += written
    db.session.remove()
    return closed


def stale_after(config):
    """Return how old a heartbeat may get before its session counts as lost."""
    return timedelta(seconds=3 * config["SESSION_HEARTBEAT_SECONDS"])


def end_details(session_id):
    """Return the details of a session's session.ended event (they hold the recording's seal), or None."""
    return db.session.scalar(select(AuditEvent.details).where(AuditEvent.session_id == session_id,
                                                              AuditEvent.action == "session.ended").limit(1))


def commands_of(session_id):
    """Return the commands typed in a session, in the order they were typed."""
    return db.session.scalars(select(SessionCommand).where(SessionCommand.session_id == session_id)
                              .order_by(SessionCommand.offset_s, SessionCommand.id)).all()


def matching_commands(user, text, actor="", since=None, until=None):
    """Select (session, command) of the commands containing text (any case) that user may read (another user's open
    session keeps its commands until it ends: app.access.readable_sessions). The command search and the trail's
    command filter (app/terminals/command_filter.py) both read this, so the two never disagree."""
    query = (readable_sessions(user).add_columns(SessionCommand)
             .join(SessionCommand, SessionCommand.session_id == TerminalSession.id)
             .where(SessionCommand.text.ilike(f"%{escape_like(text)}%", escape="\\")))
    if actor:
        query = query.where(TerminalSession.actor == actor)
    if since:
        query = query.where(SessionCommand.occurred_at >= since)
    if until:
        query = query.where(SessionCommand.occurred_at <= until)
    return query


def find_commands(user, text, actor="", since=None, until=None, limit=50):
    """Return (total, [(command, session)]) of commands containing text (any case) that user may read, newest first."""
    query = matching_commands(user, text, actor, since, until)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = db.session.execute(query.order_by(SessionCommand.occurred_at.desc(), SessionCommand.id.desc())
                              .limit(limit)).all()
    return total, [(command, session) for session, command in rows]
