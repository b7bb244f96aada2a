"""The main page (devices and terminal tabs), the connected-now list and the host-key list."""
from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from app.access import admin_required, get_device_or_404, may_read_session, may_watch, visible_open
from app.devices import hostkeys
from app.devices.listing import listing
from app.devices.models import HostKey, OfferedHostKey
from app.dbtypes import now_utc
from app.extensions import db
from app.origins import check_websocket_origin

from . import session_rows
from .models import TerminalSession
from .watch_facts import clean_reason, watch_context
from .watchers import WATCH_ENDS

bp = Blueprint("terminals", __name__)


@bp.before_request
@login_required
def check_access():
    """Refuse cross-site websocket upgrades and other users' devices before the upgrade happens."""
    if request.endpoint == "terminals.ws":
        check_websocket_origin()
        g.device = get_device_or_404(request.view_args["device_id"])  # fetched once per connection
    elif request.endpoint == "terminals.resume_ws":
        check_websocket_origin()  # whose session it is: resuming.terminal_to_resume (audited when refused)
    elif request.endpoint == "terminals.watch_ws":
        check_websocket_origin()
        if not may_watch(current_user):
            abort(404)


@bp.get("/")
def index():
    """Show the device panel and the terminal tabs."""
    return render_template("terminals/index.html", **listing())


@bp.get("/terminals/connected")
def connected():
    """Render the connected-now list (the audit viewer embeds and polls it)."""
    sessions = visible_open(current_user)
    readable = {s.id for s in sessions if may_read_session(current_user, s)}  # others' open ones: Watch, not read
    return render_template("terminals/_connected.html", sessions=sessions, readable=readable,
                           may_watch=may_watch(current_user), now=now_utc(),
                           grace=timedelta(seconds=current_app.config["TERMINAL_RESUME_SECONDS"]))


@bp.post("/terminals/sessions/<session_id>/terminate")
@admin_required
def terminate(session_id):
    """End someone's open terminal session, with an optional reason (the process holding it closes it within a
    second); a reason that cannot be kept is answered 422 with why, and nothing ends."""
    row = db.session.get(TerminalSession, session_id)
    if row is None or row.ended_at is not None:
        abort(404)
    try:
        reason = clean_reason(request.form.get("reason"))
    except ValueError as exc:
        return render_template("terminals/_watch_error.html", message=str(exc)), 422
    session_rows.terminate(row, current_user.username, reason)
    return "", 204, {"HX-Trigger": "refresh"}


def _watched_or_404(session_id):
    """Return the session for the watch page and its side, after the watch rule (app.access.may_watch)."""
    if not may_watch(current_user):
        abort(403)
    return db.get_or_404(TerminalSession, session_id)


@bp.get("/sessions/<session_id>/watch")
@admin_required
def watch(session_id):
    """Show an open terminal session as it happens, read-only, with its facts, its commands and the actions."""
    row = _watched_or_404(session_id)
    return render_template("terminals/watch.html", **watch_context(row), ended_text=WATCH_ENDS["session_ended"][0])


@bp.get("/sessions/<session_id>/watch/side")
@admin_required
def watch_side(session_id):
    """Render the watch page's polled part: the commands so far, and the facts beside them (out of band)."""
    return render_template("terminals/_watch_commands.html", **watch_context(_watched_or_404(session_id)),
                           oob=True)


@bp.get("/terminals/hostkeys")
@admin_required
def host_keys():
    """List the trusted host keys."""
    rows = db.session.scalars(select(HostKey).order_by(HostKey.host, HostKey.port)).all()
    return render_template("terminals/hostkeys.html", host_keys=rows, offered=hostkeys.pending())


@bp.get("/terminals/hostkeys/offered/<int:offered_id>")
@admin_required
def offered_host_key(offered_id):
    """Show a changed host key beside the stored one, with the choice to accept exactly it."""
    offered = db.session.get(OfferedHostKey, offered_id)
    if offered is None:
        abort(404, "That offered key was accepted or forgotten already; the known host keys show what is stored.")
    stored = db.session.scalar(select(HostKey).filter_by(host=offered.host, port=offered.port))
    return render_template("terminals/hostkey_accept.html", offered=offered, stored=stored)


@bp.post("/terminals/hostkeys/offered/<int:offered_id>/accept")
@admin_required
def accept_host_key(offered_id):
    """Trust the offered key in place of the stored one (exactly that key, not whatever comes next)."""
    offered = db.session.get(OfferedHostKey, offered_id) or abort(404)
    where, new = f"{offered.host}:{offered.port}", offered.fingerprint
    hostkeys.accept(offered, current_user.username)
    flash(f"The host key of {where} is now {new}.", "info")
    return redirect(url_for("terminals.host_keys"))


@bp.post("/terminals/hostkeys/<int:key_id>/forget")
@admin_required
def forget_host_key(key_id):
    """Forget a stored host key (the next connection trusts the key it is offered)."""
    row = db.session.get(HostKey, key_id) or abort(404)
    hostkeys.forget(row)
    flash(f"Forgot the host key of {row.host}:{row.port}.", "info")
    return redirect(url_for("terminals.host_keys"))
