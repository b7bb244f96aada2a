"""Recordings at rest: checked against the seals in the trail, pruned after the events that name them.

The trail knows nothing of recordings; it announces a verify and a prune through app.signals and
this module answers.
"""
import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, exists, select

from app.audit.events import record
from app.audit.models import AuditEvent
from app.dbtypes import iso_utc, now_utc
from app.devices.secrets import recording_key
from app.extensions import db
from app.signals import audit_pruned, verify_requested

from . import recording
from .models import SessionCommand, TerminalSession
from .records import recording_store

log = logging.getLogger("gatehouse.recordings")
BATCH = 500


def verify_recordings():
    """Re-hash every kept recording that a kept session.ended seals; return (verified count, problems)."""
    store, key = recording_store(), recording_key()
    ended = db.session.execute(select(AuditEvent.session_id, AuditEvent.target, AuditEvent.actor, AuditEvent.details)
                               .where(AuditEvent.action == "session.ended")).all()
    verified, problems, sealed = 0, [], set()
    for row in ended:
        seal = (row.details or {}).get("recording") or {}
        sealed.add(row.session_id)
        if not seal.get("sha256"):  # not recorded, or failed before anything was kept: nothing to compare
            continue
        state, detail = recording.check(store, row.session_id, key, seal)
        if state == "verified":
            verified += 1
        else:
            problems.append(f"recording {row.session_id} ({row.actor} on {row.target}): {state}"
                            + (f" ({detail})" if detail else ""))
    started = set(db.session.scalars(select(AuditEvent.session_id).where(AuditEvent.action == "session.started")))
    still_open = set(db.session.scalars(select(TerminalSession.id).where(TerminalSession.ended_at.is_(None))))
    for name in store.names():
        # A kept start with no kept end means the end that should seal this file is missing.
        if name in started and name not in sealed and name not in still_open:
            problems.append(f"recording {name}: unsealed (its session has no session.ended in the trail)")
    db.session.rollback()
    return verified, problems


@verify_requested.connect
def _on_verify(_sender, recordings=False, **_):
    """Answer `flask audit verify --recordings`."""
    return verify_recordings() if recordings else None


def prune_recordings(now=None):
    """Delete recordings, their commands and rows of sessions that ended before the cutoff and that no kept event names."""
    days = current_app.config["RECORDING_RETENTION_DAYS"]
    cutoff = (now or now_utc()) - timedelta(days=days)
    named = exists().where(AuditEvent.session_id == TerminalSession.id)
    store = recording_store()
    count = freed = 0
    failed = set()
    while True:
        query = select(TerminalSession.id).where(TerminalSession.ended_at < cutoff, ~named)
        if failed:
            query = query.where(TerminalSession.id.not_in(failed))
        ids = db.session.scalars(query.order_by(TerminalSession.ended_at).limit(BATCH)).all()
        db.session.rollback()
        if not ids:
            break
        gone = []
        for session_id in ids:
            size = store.size(session_id) or 0
            try:
                store.delete(session_id)
            except OSError as exc:  # kept, with its rows, for the next run
                log.error("recording %s could not be deleted (will retry): %s", session_id, exc)
                failed.add(session_id)
                continue
            gone.append(session_id)
            freed += size
        if gone:
            with db.engine.begin() as conn:
                conn.execute(delete(SessionCommand).where(SessionCommand.session_id.in_(gone)))
                conn.execute(delete(TerminalSession).where(TerminalSession.id.in_(gone)))
            count += len(gone)
    if count or failed:
        record("recording.pruned", f"pruned {count} session recordings older than {iso_utc(cutoff)}", actor="system",
               details={"count": count, "bytes": freed, "cutoff": iso_utc(cutoff), "retention_days": days,
                        "not_deleted": len(failed)}, strict=False)
    return count, freed, len(failed)


@audit_pruned.connect
def _on_pruned(_sender, **_):
    """Prune recordings after the events (maintenance loop and `flask audit prune`)."""
    return prune_recordings()
