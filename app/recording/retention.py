"""Recordings at rest: checked against the seals in the trail, pruned after the events that name them.

The trail knows nothing of recordings (app.audit imports nothing from here); it announces a verify,
a prune and an evidence bundle through app.signals, and connect_signals() (run by init_app) makes
this module answer.
"""
import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, exists, select

from app.audit.events import record
from app.audit.models import AuditEvent
from app.crypto import recording_key
from app.dbtypes import iso_utc, now_utc
from app.extensions import db
from app.signals import audit_pruned, recordings_requested, verify_requested
from app.terminals.models import SessionCommand, TerminalSession

from .chunks import check, iter_cast
from .store import RecordingError, open_store

log = logging.getLogger("gatehouse.recordings")
BATCH = 500  # sessions per round of deletions, and ids per IN (...) list


def verify_recordings():
    """Re-hash every stored recording that a kept session.ended seals; return (verified count, problem lines)."""
    # A file no kept event seals is a problem ("unsealed") when its session started in the kept trail
    # and is no longer open (the end that should seal it is missing: ids follow the chain, so an end
    # is never pruned before its start), or when no session of that id exists. A file whose session's
    # events were all pruned is not: it waits for RECORDING_RETENTION_DAYS with nothing left to check.
    store, key = open_store(current_app.config), recording_key()
    # Files first, then open sessions, then the trail: a row and its session.started are written
    # before the file, so every file listed here has them; a session that ends meanwhile is still
    # open in the second read or has its end row in the third (rechecked below for the last instant).
    stored = set(store.names())
    still_open = set(db.session.scalars(select(TerminalSession.id).where(TerminalSession.ended_at.is_(None))))
    verified, problems, sealed = _check_seals(store, key, _ends())
    loose = stored - sealed - still_open
    started = {row.session_id: row for row in _events("session.started", loose)}
    db.session.rollback()  # a fresh read for the sessions that ended while we read
    again, more, sealed_now = _check_seals(store, key, _ends(set(started)))
    verified, problems = verified + again, problems + more
    rows = _existing_sessions(loose - sealed_now - set(started))
    for name in sorted(loose - sealed_now):
        if store.size(name) is None:
            continue  # pruned while we read
        if name in started:
            row = started[name]
            problems.append(f"recording {name} ({row.actor} on {row.target}): unsealed"
                            " (its session ended but no kept session.ended seals it)")
        elif name not in rows:
            problems.append(f"recording {name}: unsealed (no session of that id)")
    db.session.rollback()
    return verified, problems


def _check_seals(store, key, ends):
    """Check the recordings the given session.ended rows seal; return (verified count, problem lines, ids seen)."""
    verified, problems, seen = 0, [], set()
    for row in ends:
        seen.add(row.session_id)
        seal = (row.details or {}).get("recording") or {}
        if not seal.get("sha256"):  # not recorded, or it failed before anything was kept: nothing to compare
            continue
        try:
            state, detail = check(store, row.session_id, key, seal)
        except (OSError, RecordingError) as exc:  # a directory in its place, no permission
            state, detail = "unreadable", str(exc)
        if state == "verified":
            verified += 1
        else:
            problems.append(f"recording {row.session_id} ({row.actor} on {row.target}): {state}"
                            + (f" ({detail})" if detail else ""))
    return verified, problems, seen


def _ends(ids=None):
    """Yield the kept session.ended rows (of the given sessions), a batch at a time."""
    if ids is not None:
        yield from _events("session.ended", ids, AuditEvent.details)
        return
    query = (select(AuditEvent.session_id, AuditEvent.target, AuditEvent.actor, AuditEvent.details)
             .where(AuditEvent.action == "session.ended", AuditEvent.session_id.is_not(None))
             .order_by(AuditEvent.id).execution_options(yield_per=BATCH))
    yield from db.session.execute(query)


def _events(action, ids, *columns):
    """Return the kept events of one action that name the given sessions."""
    rows = []
    for part in _parts(ids):
        rows += db.session.execute(select(AuditEvent.session_id, AuditEvent.target, AuditEvent.actor, *columns)
                                   .where(AuditEvent.action == action, AuditEvent.session_id.in_(part))).all()
    return rows


def _existing_sessions(ids):
    """Return which of the given session ids have a row."""
    found = set()
    for part in _parts(ids):
        found.update(db.session.scalars(select(TerminalSession.id).where(TerminalSession.id.in_(part))))
    return found


def _parts(ids):
    """Split ids into lists short enough for an IN (...)."""
    ids = sorted(ids)
    return [ids[i:i + BATCH] for i in range(0, len(ids), BATCH)]


def prune_recordings(now=None):
    """Delete the recordings, commands and rows of sessions ended before the cutoff that no kept event names."""
    # Returns (recordings deleted, bytes freed, recordings that could not be deleted).
    days = current_app.config["RECORDING_RETENTION_DAYS"]
    cutoff = (now or now_utc()) - timedelta(days=days)
    store = open_store(current_app.config)
    count = freed = sessions = 0
    failed = set()
    while ids := _expired(cutoff, failed):
        gone, deleted, size = _delete_files(store, ids, failed)
        count, freed = count + deleted, freed + size
        if gone:
            _delete_rows(gone)
            sessions += len(gone)
    if sessions or failed:
        log.info("pruned %d recordings (%d bytes) and %d ended sessions older than %s; %d could not be deleted",
                 count, freed, sessions, iso_utc(cutoff), len(failed))
        record("recording.pruned", f"pruned {count} session recordings older than {iso_utc(cutoff)}"
               + (f"; {len(failed)} could not be deleted" if failed else ""), actor="system",
               details={"count": count, "bytes": freed, "sessions": sessions, "cutoff": iso_utc(cutoff),
                        "retention_days": days, "not_deleted": len(failed)}, strict=False)
    return count, freed, len(failed)


def _expired(cutoff, failed):
    """Return the next batch of sessions ended before the cutoff that no kept event names (skipping failed ones)."""
    # Any kept event, not only the seal: the trail never points at a session that is gone, and a
    # recording.viewed keeps what was looked at for as long as the look is kept.
    named = exists().where(AuditEvent.session_id == TerminalSession.id)
    query = select(TerminalSession.id).where(TerminalSession.ended_at < cutoff, ~named)  # open ones: NULL
    if failed:
        query = query.where(TerminalSession.id.not_in(failed))
    ids = db.session.scalars(query.order_by(TerminalSession.ended_at).limit(BATCH)).all()
    db.session.rollback()
    return ids


def _delete_files(store, ids, failed):
    """Delete the recordings of the given sessions; return (ids gone, files deleted, bytes freed).

    A recording that cannot be deleted is added to failed: kept, with its rows, for the next run.
    """
    gone, count, freed = [], 0, 0
    for session_id in ids:
        try:
            size = store.size(session_id)
            store.delete(session_id)
        except OSError as exc:  # the others go on
            log.error("recording %s could not be deleted (will retry): %s", session_id, exc)
            failed.add(session_id)
            continue
        gone.append(session_id)
        if size is not None:
            count += 1
            freed += size
    return gone, count, freed


def _delete_rows(ids):
    """Delete the rows and commands of sessions whose recordings are gone."""
    # Once no event names a session and its recording is gone, the row (user, address, target) is
    # all that is left of it, and it must not outlive the retention. The file goes first, so a
    # crash in between leaves rows without a file, pruned next time.
    with db.engine.begin() as conn:
        conn.execute(delete(SessionCommand).where(SessionCommand.session_id.in_(ids)))
        conn.execute(delete(TerminalSession).where(TerminalSession.id.in_(ids)))


def _on_verify(_sender, recordings=False, **_):
    """Answer `flask audit verify --recordings`."""
    return verify_recordings() if recordings else None


def _on_recordings_requested(_sender, **_):
    """Answer `flask audit bundle`: a function that yields one session's plaintext asciicast piece by piece."""
    store, key = open_store(current_app.config), recording_key()
    return lambda session_id: iter_cast(store, session_id, key)


def _on_pruned(_sender, now=None, **_):
    """Prune recordings after the events (the prune job and `flask audit prune`); say what went."""
    count, freed, failed = prune_recordings(now)
    return (f"pruned {count} recordings ({freed} bytes) older than {current_app.config['RECORDING_RETENTION_DAYS']}"
            " days" + (f"; {failed} could not be deleted (logged, tried again next time)" if failed else ""))


def connect_signals():
    """Answer the trail's verify, prune and bundle signals (connecting twice changes nothing)."""
    verify_requested.connect(_on_verify)
    recordings_requested.connect(_on_recordings_requested)
    audit_pruned.connect(_on_pruned)
