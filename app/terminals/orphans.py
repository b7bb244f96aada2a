"""Open session rows nobody holds any more: their process died, or their node stopped beating.

The sweep ends them with the last sign of life as the end time, and repairs what their recording
holds so its seal goes into session.ended like any other.
"""
import logging
import os
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from app.crypto import recording_key
from app.dbtypes import now_utc
from app.extensions import db
from app.leases import node_name, worker_id
from app.recording.chunks import recover
from app.recording.store import RecordingError, open_store

from .models import TerminalSession
from .session_events import SessionMetadata
from .session_rows import close_row

log = logging.getLogger("gatehouse.sessions")


def stale_after(config):
    """Return how old a heartbeat may get before its session counts as lost."""
    return timedelta(seconds=3 * config["SESSION_HEARTBEAT_SECONDS"])


def sweep_orphans(stale_after):
    """End open sessions nobody holds: a dead process on this host, or a heartbeat older than stale_after."""
    host, me, cutoff = node_name(), worker_id(), now_utc() - stale_after
    rows = db.session.scalars(select(TerminalSession).where(TerminalSession.ended_at.is_(None))).all()
    closed = 0
    for row in rows:
        reason = _orphan_reason(row, host, me, cutoff)
        if reason:
            # The end time is the last sign of life, not the moment somebody noticed.
            _, written = close_row(SessionMetadata.of(row), reason, row.bytes_in, row.bytes_out, row.heartbeat_at,
                                   recording=recover_recording(row.id))
            closed += written
    db.session.remove()
    return closed


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


def _pid_alive(pid):
    """Say whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_recording(session_id):
    """Repair the recording of a session whose process died and return its seal (None if not recorded)."""
    try:
        return recover(open_store(current_app.config), session_id, recording_key())
    except (OSError, RecordingError) as exc:
        log.error("recording of session %s cannot be recovered: %s", session_id, exc)
        return {"state": "failed", "error": f"cannot be recovered: {exc}"}


def open_counts():
    """Return {"attached": n, "detached": n}: the cluster's open sessions, as their rows say (for /metrics)."""
    detached = TerminalSession.detached_at.is_not(None)
    rows = db.session.execute(select(detached, func.count()).where(TerminalSession.ended_at.is_(None))
                              .group_by(detached)).all()
    counts = {"attached": 0, "detached": 0}
    counts.update({"detached" if is_detached else "attached": n for is_detached, n in rows})
    return counts
