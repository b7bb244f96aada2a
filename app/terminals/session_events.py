"""Every session.* and recording.* audit event of a terminal session, and the metadata they all carry.

A session's events name the same five facts (who, whose account, which device, which session, from where):
SessionMetadata holds them once, as Teleport's events embed SessionMetadata, and gives record() its keyword
arguments. Events someone else causes about a session (an admin ends it, a watcher comes and goes) name the
session and its device; their actor is whoever acts.
"""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.audit.events import FAILURE, record
from app.audit.models import AuditEvent
from app.dbtypes import iso_utc
from app.extensions import db


@dataclass(frozen=True)
class SessionMetadata:
    """What every event of a session says about it, from its start (a row or a live terminal) to its end."""

    id: str
    user_id: int | None
    actor: str
    target: str
    source_ip: str | None
    started_at: datetime

    @classmethod
    def of(cls, row):
        """Return the metadata of a TerminalSession row."""
        return cls(row.id, row.user_id, row.actor, row.target, row.source_ip, row.started_at)

    def audit_fields(self):
        """Return the record() keyword arguments of an event the session's own user causes."""
        return {"actor": self.actor, "user_id": self.user_id, "target": self.target, "session_id": self.id,
                "source_ip": self.source_ip}

    def subject(self):
        """Return the record() keyword arguments of an event somebody else causes about this session."""
        return {"target": self.target, "session_id": self.id}


def started(metadata, device):
    """Record session.started; raise AuditWriteError when the trail refuses it."""
    record("session.started", f"started session with {device.label}", **metadata.audit_fields(),
           details={"device_id": device.id, "ssh_user": device.username})


def ended(metadata, reason, bytes_in, bytes_out, ended_at, recording=None):
    """Record session.ended with its counters and the recording's seal; raise when the trail refuses it."""
    details = {"reason": reason, "duration_s": round((ended_at - metadata.started_at).total_seconds(), 3),
               "bytes_in": bytes_in, "bytes_out": bytes_out, "ended_at": iso_utc(ended_at)}
    if recording:
        details["recording"] = recording  # sha256 and size of the plaintext: the chain now covers it
    record("session.ended", f"stopped session with {metadata.target}", **metadata.audit_fields(), details=details)


def failed(user, device, reason, message):
    """Record that a session could not be opened (never raises)."""
    record("session.failed", f"could not start session with {device.label}: {message}", outcome=FAILURE,
           actor=user.username, user_id=user.id, target=device.label, details={"reason": reason}, strict=False)


def refused(user, device, reason, message, **details):
    """Record that a session was refused before it was tried (the node is full; never raises)."""
    record("session.refused", f"refused a session with {device.label}: {message}", outcome=FAILURE,
           actor=user.username, user_id=user.id, target=device.label, details={"reason": reason, **details},
           strict=False)


def terminated(row, by, reason=""):
    """Record that an admin ended a session, with the reason they gave (checked: app.terminals.watch_facts)."""
    metadata = SessionMetadata.of(row)
    details = {"user": metadata.actor, "source_ip": metadata.source_ip, "by": by}
    message = f"terminated the session of {metadata.actor} with {metadata.target}"
    if reason:
        details["reason"] = reason
        message += f": {reason}"
    record("session.terminated", message, **metadata.subject(), details=details)


def recording_stopped(metadata, state, error, max_mb):
    """Record that a session's recording stopped early: it could not be written, or reached its cap."""
    if state == "limited":
        record("recording.limited", f"recording of the session with {metadata.target} stopped at {max_mb} MB",
               **metadata.audit_fields(), details={"max_mb": max_mb}, strict=False)
    else:
        record("recording.failed", f"recording of the session with {metadata.target} failed: {error}",
               outcome=FAILURE, **metadata.audit_fields(), details={"error": error}, strict=False)


def watch_started(metadata, by):
    """Record that someone started watching a session."""
    record("session.watch_started", f"started watching the session of {metadata.actor} with {metadata.target}",
           **metadata.subject(), details={"user": metadata.actor, "by": by})


def watch_ended(metadata, by, reason, words):
    """Record that someone stopped watching a session, and why (a reason code and its words)."""
    record("session.watch_ended",
           f"stopped watching the session of {metadata.actor} with {metadata.target} — {words}",
           **metadata.subject(), details={"user": metadata.actor, "by": by, "reason": reason}, strict=False)


def end_details(session_id):
    """Return the details of a session's session.ended event (they hold the recording's seal), or None."""
    return db.session.scalar(select(AuditEvent.details).where(AuditEvent.session_id == session_id,
                                                              AuditEvent.action == "session.ended").limit(1))


def detached(metadata, code, resume_seconds):
    """Record that the browser went away without a close; the session waits resume_seconds for its owner."""
    record("session.detached", f"browser left the session with {metadata.target}; kept {resume_seconds} s to resume",
           **metadata.audit_fields(), details={"close_code": code, "resume_seconds": resume_seconds}, strict=False)


def resumed(metadata, source, gone_for, taken_over):
    """Record that the owner attached a browser again, from which address and user agent (source)."""
    source_ip, user_agent = source
    details = {"previous_source_ip": metadata.source_ip, "user_agent": user_agent, "taken_over": taken_over}
    if gone_for is not None:
        details["detached_s"] = round(gone_for, 3)
    fields = {**metadata.audit_fields(), "source_ip": source_ip}  # the address it is resumed from
    record("session.resumed", f"resumed session with {metadata.target} from {source_ip}", **fields,
           details=details)


def resume_refused(user, row, source_ip, why):
    """Record an attempt to resume a session that is not the user's (or not open): they got nothing."""
    record("session.resume_refused", f"could not resume session {row.id if row else ''}: {why}", outcome=FAILURE,
           actor=user.username, user_id=user.id, target=row.target if row else "", source_ip=source_ip,
           session_id=row.id if row else None, details={"owner": row.actor if row else None, "reason": why},
           strict=False)
