"""Terminal session rows: opened with session.started, closed once with session.ended, kept alive by heartbeats.

The live side (app.terminals.live and its registry) calls these; so does the orphan sweep. Ending a session
from anywhere is one path: a flag on its row (app.session_ends.request_end), which the process that holds
it reads here (end_requests) and acts on within a second.
"""
import uuid

from sqlalchemy import BigInteger, String, bindparam, column, select, update, values

from app.audit.events import AuditWriteError
from app.dbtypes import now_utc
from app.devices.models import Device
from app.extensions import db
from app.leases import worker_id
from app.session_ends import request_end

from . import session_events
from .models import TerminalSession
from .session_events import SessionMetadata


def open_row(user, device, source_ip, login_id):
    """Store the open session and record session.started; raise (AuditWriteError or other) to refuse it."""
    row = TerminalSession(id=str(uuid.uuid4()), user_id=user.id, device_id=device.id, actor=user.username,
                          target=device.label, source_ip=source_ip, worker=worker_id(), login_session_id=login_id)
    db.session.add(row)
    db.session.execute(update(Device).where(Device.id == device.id).values(last_used_at=now_utc()))
    db.session.commit()
    metadata = SessionMetadata.of(row)
    try:
        session_events.started(metadata, device)
    except AuditWriteError:
        db.session.delete(row)
        db.session.commit()
        raise
    return metadata


def close_row(metadata, reason, bytes_in, bytes_out, ended_at, row_closed=False, recording=None):
    """End the row if still open and record session.ended, with the recording's seal; raise when either fails.

    Returns (row_closed, written): a caller that retries passes row_closed back, so the event of
    a row it already closed is written with the original end time.
    """
    if not row_closed:
        with db.engine.begin() as conn:
            closed = conn.execute(
                update(TerminalSession)
                .where(TerminalSession.id == metadata.id, TerminalSession.ended_at.is_(None))
                .values(ended_at=ended_at, end_reason=reason, bytes_in=bytes_in, bytes_out=bytes_out)
            ).rowcount
        if not closed:
            return True, False  # somebody else (a sweeper, another path) ended it first
    session_events.ended(metadata, reason, bytes_in, bytes_out, ended_at, recording=recording)
    return True, True


def heartbeat(counters):
    """Refresh heartbeat and byte counters of open sessions: counters is [(id, bytes_in, bytes_out)], one statement."""
    table, now = TerminalSession.__table__, now_utc()
    open_rows = table.c.ended_at.is_(None)
    if db.engine.dialect.name == "postgresql":  # one round trip: UPDATE ... FROM (VALUES ...)
        beat = values(column("sid", String), column("bin", BigInteger), column("bout", BigInteger),
                      name="beat").data(list(counters))
        statement = update(table).where(table.c.id == beat.c.sid, open_rows).values(
            heartbeat_at=now, bytes_in=beat.c.bin, bytes_out=beat.c.bout)
        params = None
    else:  # executemany of one compiled statement
        statement = update(table).where(table.c.id == bindparam("sid"), open_rows).values(
            heartbeat_at=now, bytes_in=bindparam("bin"), bytes_out=bindparam("bout"))
        params = [{"sid": sid, "bin": bytes_in, "bout": bytes_out} for sid, bytes_in, bytes_out in counters]
    with db.engine.begin() as conn:
        conn.execute(statement, params)


def end_requests(session_ids):
    """Return {session id: reason} of the given sessions that someone asked to end."""
    if not session_ids:
        return {}
    with db.engine.connect() as conn:
        rows = conn.execute(select(TerminalSession.id, TerminalSession.terminate_reason).where(
            TerminalSession.id.in_(session_ids), TerminalSession.terminate_requested)).all()
    return {row.id: row.terminate_reason or "terminated" for row in rows}


def terminate(row, by, reason=""):
    """End an open session on an admin's word (and reason): flag it for its holder and record session.terminated."""
    request_end("terminated", TerminalSession.id == row.id)
    session_events.terminated(row, by, reason)


def set_detached(session_id, at):
    """Note that no browser is attached to an open session since at (Connected now shows it)."""
    with db.engine.begin() as conn:
        conn.execute(update(TerminalSession).where(TerminalSession.id == session_id, TerminalSession.ended_at.is_(None))
                     .values(detached_at=at))


def set_resumed(session_id, login_id):
    """Note that a browser is attached again, through login_id: the session now ends with that log-in."""
    with db.engine.begin() as conn:
        conn.execute(update(TerminalSession).where(TerminalSession.id == session_id, TerminalSession.ended_at.is_(None))
                     .values(detached_at=None, login_session_id=login_id))
