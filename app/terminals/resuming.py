"""Coming back to open sessions: which ones a page restores as tabs, and who may attach to one again.

Only a session's owner resumes it (app.access.may_resume); anyone else's attempt gets the same answer as a
session that does not exist, and is recorded. The terminal page asks GET /terminals/open when it loads and
makes a tab of each session listed. A session another process or node holds is resumed through it
(app.terminals.resume_relay) when the cluster bus reaches it; only when it cannot (several processes on one SQLite
database) does the resume answer `elsewhere`.
"""
import json
from datetime import timedelta

from flask import abort, current_app, jsonify, request, url_for
from flask_login import current_user

from app import cluster
from app.access import may_resume, resumable_sessions
from app.dbtypes import iso_utc
from app.devices.models import Device
from app.extensions import db
from app.leases import worker_id
from app.session_ends import request_end

from . import registry, resume_relay, session_events
from .messages import END_MESSAGES
from .models import TerminalSession
from .views import bp

NOT_YOURS = "No session of yours with this id is open."
ELSEWHERE = ("This session is held by another Gatehouse process that this one cannot reach; it cannot be resumed "
             "from here. Open a new session, or come back through the same server.")


def terminal_to_resume(websocket, session_id):
    """Return the live terminal the current user may resume (here, or a RemoteSession relayed from its holder), or
    tell the browser why not and return None."""
    row = db.session.get(TerminalSession, session_id)
    if row is None or not may_resume(current_user, row):
        if row is not None and row.ended_at is None:  # somebody else's open session: worth seeing in the trail
            session_events.resume_refused(current_user, row, request.remote_addr, "not the owner")
        return _refuse(websocket, "error", NOT_YOURS, "not_resumable")
    terminal = registry.find(session_id)
    if terminal is None:
        db.session.refresh(row)  # it may have ended since
        if row.ended_at is not None:
            return _refuse(websocket, "closed", _ended_words(row.end_reason), row.end_reason)
        if row.worker == worker_id() or not cluster.reaches(row.worker):
            return _refuse(websocket, "error", ELSEWHERE, "elsewhere")
        terminal = resume_relay.RemoteSession(row)
    db.session.remove()  # hold no database connection for the session's lifetime
    return terminal


def _refuse(websocket, kind, message, reason):
    """Tell the browser why there is nothing to resume; return None."""
    websocket.send(json.dumps({"type": kind, "message": message, "reason": reason}))
    return None


def _ended_words(reason):
    """Return what the tab says about a session that ended while nobody was attached."""
    if reason == "disconnected":
        return "This session ended: nobody came back to it in time."
    return END_MESSAGES.get(reason, "This session has ended.")


@bp.get("/terminals/open")
def open_sessions():
    """List the current user's open sessions, for the terminal page to restore as tabs (JSON)."""
    window = request.args.get("window")
    rows = resumable_sessions(current_user)
    elsewhere = resume_relay.windows_of([r for r in rows if registry.find(r.id) is None]) if window else {}
    names = dict(db.session.execute(db.select(Device.id, Device.name).where(
        Device.id.in_({r.device_id for r in rows if r.device_id is not None}))).all())
    return jsonify(sessions=[_listed(row, names.get(row.device_id), window, elsewhere) for row in rows])


def _listed(row, name, window, elsewhere):
    """Describe one open session for the page: where to resume it and whether this window should (elsewhere: the
    windows of sessions other processes hold, as their holders said)."""
    terminal = registry.find(row.id)
    grace = current_app.config["TERMINAL_RESUME_SECONDS"]
    had = terminal.window if terminal is not None else elsewhere.get(row.id)
    here = bool(window) and had == window  # this window had it (a reload), whichever process holds it
    return {
        "session": row.id, "name": name or row.target, "target": row.target, "started_at": iso_utc(row.started_at),
        "detached": row.detached_at is not None, "detached_at": iso_utc(row.detached_at),
        "resume_until": iso_utc(row.detached_at + timedelta(seconds=grace)) if row.detached_at else None,
        "here": here, "held_here": terminal is not None,
        "resume_url": url_for("terminals.resume_ws", session_id=row.id),
        "ws_url": url_for("terminals.ws", device_id=row.device_id) if row.device_id is not None else None,
    }


@bp.post("/terminals/sessions/<session_id>/close")
def close_session(session_id):
    """End one of the user's own sessions while no socket carries it (its tab closed while reconnecting)."""
    row = db.session.get(TerminalSession, session_id)
    if row is None or row.ended_at is not None or not may_resume(current_user, row):
        abort(404)
    request_end("client_closed", TerminalSession.id == row.id)
    return "", 204
