"""Retention: delete events older than AUDIT_RETENTION_DAYS in batches, archive them first if asked."""
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select

from app.dbtypes import iso_utc, now_utc
from app.extensions import db
from app.signals import audit_pruned

from . import archive
from .checkpoints import checkpoint
from .events import FAILURE, record
from .integrity import verify
from .models import AuditEvent, AuditOutbox

log = logging.getLogger("gatehouse.audit")


@dataclass
class PruneResult:
    """How many rows went, the cut-off, and the last pruned row the chain now starts after."""

    count: int
    cutoff: datetime
    anchor_id: int | None = None
    archives: tuple = ()
    refused: str | None = None  # why nothing was pruned although rows had expired
    notes: tuple = ()  # what went with the events, in the words of whoever pruned it (recordings)


def prune(now=None, retention_days=None, batch_size=5000, archive_dir=None):
    """Delete the oldest events (a prefix of the chain) older than the retention period."""
    config = current_app.config
    retention_days = retention_days or config["AUDIT_RETENTION_DAYS"]
    archive_dir = archive_dir if archive_dir is not None else config.get("AUDIT_ARCHIVE_DIR")
    now = now or now_utc()
    cutoff = now - timedelta(days=retention_days)
    # Prune a prefix only: everything before the oldest row that is still within retention.
    keep_from = db.session.scalar(select(func.min(AuditEvent.id)).where(AuditEvent.occurred_at >= cutoff))
    bound = AuditEvent.id < keep_from if keep_from is not None else AuditEvent.id.is_not(None)
    first_id, last_id, count = db.session.execute(
        select(func.min(AuditEvent.id), func.max(AuditEvent.id), func.count()).where(bound)
    ).one()
    db.session.rollback()
    if not count:
        return PruneResult(0, cutoff, notes=_announce(now, cutoff))
    # Deleting broken rows would launder them: the anchor would vouch for whatever they had become.
    verdict = verify(batch_size=batch_size, upto=last_id)
    if not verdict.ok:
        return _refuse(verdict, cutoff, first_id, last_id)
    anchor_hash = db.session.scalar(select(AuditEvent.hash).where(AuditEvent.id == last_id))
    # Events still queued for syslog or the webhook go with their rows: said here, since they never reach it.
    undelivered = db.session.scalar(select(func.count(func.distinct(AuditOutbox.event_id)))
                                    .where(AuditOutbox.event_id <= last_id))
    db.session.rollback()
    unsent = f"; {undelivered} of them were never delivered to syslog or the alert webhook" if undelivered else ""
    # Written before deleting, so the trail says what is about to go and where the chain resumes.
    record("audit.pruned", f"pruning {count} audit events older than {iso_utc(cutoff)}{unsent}", actor="system",
           details={"count": count, "cutoff": iso_utc(cutoff), "from_id": first_id, "anchor_id": last_id,
                    "anchor_hash": anchor_hash, "retention_days": retention_days,
                    "archived": bool(archive_dir), "undelivered": undelivered})
    archives = _delete(first_id, last_id, batch_size, archive_dir)
    log.info("pruned %d audit events older than %s", count, iso_utc(cutoff))
    _checkpoint_cut()
    return PruneResult(count, cutoff, last_id, archives, notes=_announce(now, cutoff))


def _delete(first_id, last_id, batch_size, archive_dir):
    """Delete the rows first_id..last_id and their outbox rows batch by batch, each archived first if asked."""
    archives = set()
    done = first_id - 1
    while done < last_id:
        upper = min(done + batch_size, last_id)
        if archive_dir:
            archives.update(archive.write(archive_dir, done, upper))  # files and manifest before the delete
        with db.engine.begin() as conn:
            conn.execute(delete(AuditOutbox).where(AuditOutbox.event_id > done, AuditOutbox.event_id <= upper))
            conn.execute(delete(AuditEvent).where(AuditEvent.id > done, AuditEvent.id <= upper))
        done = upper
    return tuple(sorted(archives))


def _checkpoint_cut():
    """Sign the head right after a cut, so the new start is vouched for; a failure is logged, the prune stands."""
    try:
        checkpoint(force=True)
    except Exception:
        log.exception("the checkpoint after the prune failed")


def _announce(now, cutoff):
    """Tell what must go with the events (recordings) that a prune ran, on the same clock; return what they said."""
    # A receiver's failure is logged and said, not raised: the events are pruned either way.
    app = current_app._get_current_object()
    notes = []
    for receiver in audit_pruned.receivers_for(app):
        try:
            note = receiver(app, now=now, cutoff=cutoff)
        except Exception:
            log.exception("pruning what goes with the events failed")
            note = "pruning what goes with the events failed (see the log)"
        if note:
            notes.append(note)
    return tuple(notes)


def _refuse(verdict, cutoff, first_id, last_id):
    """Record (critical) and log that expired rows stay because they fail verification."""
    reason = f"event {verdict.bad_id} {verdict.problem}"
    log.error("audit prune refused: the rows up to %d do not verify: %s", last_id, reason)
    record("audit.pruned", f"pruning refused: the expired audit events do not verify ({reason})", outcome=FAILURE,
           actor="system", details={"cutoff": iso_utc(cutoff), "from_id": first_id, "upto_id": last_id,
                                    "bad_id": verdict.bad_id, "problem": verdict.problem}, strict=False)
    return PruneResult(0, cutoff, refused=str(verdict))

