"""The main page (devices and terminal tabs), the connected-now list and the host-key list."""
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from app.access import admin_required, get_device_or_404, may_read_session, may_watch
from app.devices.listing import listing
from app.extensions import db
from app.origins import check_websocket_origin

from . import hostkeys, records
from .models import HostKey, OfferedHostKey, TerminalSession

bp = Blueprint("terminals", __name__)


@bp.before_request
@login_required
def check_access():
    """Refuse cross-site websocket upgrades and other users' devices before the upgrade happens."""
    if request.endpoint == "terminals.ws":
        check_websocket_origin()
        g.device = get_device_or_404(request.view_args["device_id"])  # fetched once per connection
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
    sessions = records.visible_open(current_user)
    readable = {s.id for s in sessions if may_read_session(current_user, s)}  # others' open ones: Watch, not read
    return render_template("terminals/_connected.html", sessions=sessions, readable=readable,
                           may_watch=may_watch(current_user))


@bp.post("/terminals/sessions/<session_id>/terminate")
@admin_required
def terminate(session_id):
    """End someone's open terminal session (the process holding it closes it within a second)."""
    row = db.session.get(TerminalSession, session_id)
    if row is None or row.ended_at is not None:
        abort(404)
    records.terminate(row, current_user.username)
    return "", 204, {"HX-Trigger": "refresh"}


@bp.get("/sessions/<session_id>/watch")
@admin_required
def watch(session_id):
    """Show an open terminal session as it happens, read-only."""
    row = db.get_or_404(TerminalSession, session_id)
    return render_template("terminals/watch.html", session=row)


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
