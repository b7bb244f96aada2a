"""Typing in several terminals at once (split view's "type in all panes"): the audit event the page asks for.

The page mirrors keystrokes to several sessions only once this endpoint has recorded `session.broadcast`
(fail closed: no event, no mirroring). It names the sessions, whether the mode is on, and what changed it:
`toggle` (the user's switch) or `panes` (the panes shown changed while it was on, or fewer than two remain).
"""
from flask import jsonify, request
from flask_login import current_user

from app.access import own_sessions
from app.audit.events import AuditWriteError, record
from app.extensions import db

from .models import TerminalSession
from .views import bp

MAX_SESSIONS = 4  # a split view holds at most four panes
CAUSES = ("toggle", "panes")


def _read(body):
    """Return (error, session ids, on, cause) from the request's JSON body; error is None when it is sound."""
    if not isinstance(body, dict):
        return "Send a JSON object: {\"sessions\": [session ids], \"on\": true or false}.", None, None, None
    ids, on, cause = body.get("sessions"), body.get("on"), body.get("cause", "toggle")
    if not isinstance(on, bool):
        return "\"on\" must be true or false.", None, None, None
    if cause not in CAUSES:
        return f"\"cause\" must be one of {', '.join(CAUSES)}.", None, None, None
    if not isinstance(ids, list) or not all(isinstance(i, str) and 0 < len(i) <= 36 for i in ids):
        return "\"sessions\" must be a list of terminal session ids.", None, None, None
    if len(set(ids)) != len(ids):
        return "A session is listed twice.", None, None, None
    least = 2 if on else 1
    if not least <= len(ids) <= MAX_SESSIONS:
        return f"Typing in all panes takes {least} to {MAX_SESSIONS} sessions; {len(ids)} were sent.", None, None, None
    return None, ids, on, cause


def _own_sessions(ids, open_only):
    """Return the current user's sessions with these ids, in the given order, or None if any is not theirs
    (or, when open_only, has ended)."""
    query = own_sessions(current_user, ids)
    if open_only:
        query = query.where(TerminalSession.ended_at.is_(None))
    rows = {row.id: row for row in db.session.scalars(query)}
    if len(rows) != len(ids):
        return None
    return [rows[i] for i in ids]


def _message(rows, on, cause):
    """Return the event's sentence."""
    names = ", ".join(row.target for row in rows)
    if not on:
        ended = "fewer than two panes remained" if cause == "panes" else "switched off"
        return f"stopped typing in several sessions at once ({ended}): {names}"
    verb = "now types" if cause == "panes" else "started typing"
    return f"{verb} in {len(rows)} sessions at once: {names}"


@bp.post("/terminals/broadcast")
def broadcast():
    """Record that typing now goes (or no longer goes) to several of the user's open sessions at once."""
    error, ids, on, cause = _read(request.get_json(silent=True))
    if error:
        return jsonify(error=error), 400
    rows = _own_sessions(ids, open_only=on)
    if rows is None:
        state = "open terminal session" if on else "terminal session"
        return jsonify(error=f"Not every session listed is an {state} of yours; nothing was changed."), 404
    try:
        # The event belongs to the first session listed: the pane the typing comes from.
        record("session.broadcast", _message(rows, on, cause), target=", ".join(r.target for r in rows)[:400],
               session_id=rows[0].id, details={"sessions": ids, "on": on, "cause": cause}, strict=on)
    except AuditWriteError:
        return jsonify(error="Typing in all panes stays off: the audit trail could not record it. "
                             "Try again in a moment."), 503
    return jsonify(sessions=ids, on=on)
