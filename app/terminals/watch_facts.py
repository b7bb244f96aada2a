"""The watch page's side: the session's facts and its commands so far, and the reason an admin gives for ending it.

The page and its polled part both read watch_context(), so a poll shows what a reload would. Who may read them is
the watch rule (app.access.may_watch), checked by the routes in views.py.
"""
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.dbtypes import now_utc
from app.extensions import db
from app.text import describe, is_hidden

from .session_commands import commands_of

# A reason is a sentence for the trail and the session's user, not a report: long enough for a ticket number and
# a few words, short enough to read in one line of the trail.
REASON_MAX = 200
# How often the side asks for new commands and facts: the recorder stores what it found once a second.
POLL_SECONDS = 2


def clean_reason(text):
    """Return the reason to keep (outer spaces trimmed, may be empty); raise ValueError saying what is wrong."""
    text = (text or "").strip()
    if len(text) > REASON_MAX:
        raise ValueError(f"The reason is {len(text)} characters long; at most {REASON_MAX} are kept. "
                         "Shorten it, then terminate again.")
    hidden = next((char for char in text if is_hidden(char)), None)
    if hidden is not None:
        raise ValueError(f"The reason holds a character that does not show ({describe(hidden)}); "
                         "type it as plain text, then terminate again.")
    return text


def termination(session_id):
    """Return the details of the session's session.terminated event (who ended it, and why), or None."""
    return db.session.scalar(select(AuditEvent.details).where(AuditEvent.session_id == session_id,
                                                              AuditEvent.action == "session.terminated")
                             .order_by(AuditEvent.id).limit(1))


def termination_reason(session_id):
    """Return the reason an admin gave for ending the session, or ""."""
    return ((termination(session_id) or {}).get("reason") or "").strip()


def watch_context(row):
    """Return what the side of the watch page shows of a session: facts, commands, how it ended."""
    ended = row.ended_at is not None
    return {"session": row, "commands": list(reversed(commands_of(row.id))), "now": now_utc(),
            "termination": termination(row.id) if ended else None, "poll_seconds": POLL_SECONDS,
            "reason_max": REASON_MAX}
