"""User administration (admins only): create, disable, change role, delete; current log-in blocks, lifted."""
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from app.access import admin_required
from app.audit.events import record
from app.extensions import db
from app.session_ends import end_deviceless, end_on_devices_of, end_sessions_without_access

from . import logins, throttle, totp
from .accounts import AccountError, create_user, generated_password, reset_password
from .forms import NewUserForm
from .models import User

bp = Blueprint("users", __name__, url_prefix="/users")


def get_user_or_404(user_id):
    """Return another user than the one acting (nobody disables, demotes or deletes themselves)."""
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    if user.id == current_user.id:
        abort(400, "You cannot change your own account here.")
    return user


def _flip(user_id, field):
    """Turn a yes/no field of another user the other way and save it; return the user."""
    user = get_user_or_404(user_id)
    setattr(user, field, not getattr(user, field))
    db.session.commit()
    return user


def _page(form, status=200):
    """Render the user list with the new-user form."""
    users = db.session.scalars(select(User).order_by(User.username)).all()
    return render_template("auth/users.html", users=users, form=form), status


@bp.get("/")
@admin_required
def index():
    """List the users and offer the new-user form."""
    return _page(NewUserForm())


@bp.post("/")
@admin_required
def create():
    """Create a user."""
    form = NewUserForm()
    if form.validate_on_submit():
        try:
            user = create_user(form.username.data, form.password.data, admin=form.is_admin.data, must_change=True)
        except AccountError as refused:  # taken by someone else between the check and the insert
            form[refused.field].errors.append(refused.message)
            return _page(form, 422)
        flash(f"User {user.username} created; they choose their own password at their first log-in.", "info")
        return redirect(url_for("users.index"))
    return _page(form, 422)


@bp.post("/<int:user_id>/disable")
@admin_required
def toggle_disabled(user_id):
    """Disable a user (their sessions end at once) or enable them again."""
    user = _flip(user_id, "disabled")
    if user.disabled:
        ended = end_on_devices_of(user.id)  # their stored credentials serve nobody now: others' terminals end too
        record("user.disabled", f"disabled user {user.username}",
               details={"username": user.username, "sessions_ended": ended})
        logins.revoke_user(user.id, "user_disabled", by=current_user.username)
    else:
        record("user.updated", f"enabled user {user.username}", details={"username": user.username,
                                                                         "fields": ["disabled"]})
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/role")
@admin_required
def toggle_admin(user_id):
    """Give or take the admin role."""
    user = _flip(user_id, "is_admin")
    role = "admin" if user.is_admin else "user"
    # An admin's devices count under every grant of their folder or tag; a demoted one's only where chosen.
    ended = 0 if user.is_admin else len(end_sessions_without_access())
    record("user.role_changed", f"changed role of {user.username} to {role}",
           details={"username": user.username, "role": role, "sessions_ended": ended})
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/delete")
@admin_required
def delete(user_id):
    """Delete a user and their devices; their audit events stay, under their name."""
    user = get_user_or_404(user_id)
    username = user.username
    logins.revoke_user(user.id, "user_deleted", by=current_user.username)
    db.session.delete(user)
    db.session.commit()
    ended = end_deviceless()  # their devices went with them: every terminal on those ends
    record("user.deleted", f"deleted user {username}", details={"username": username, "sessions_ended": ended})
    flash(f"User {username} deleted.", "info")
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/reset-password")
@admin_required
def give_new_password(user_id):
    """Give a user a generated password, shown once on this answer; their log-ins and terminals end, and they must
    choose their own at their next log-in."""
    user = get_user_or_404(user_id)
    password = generated_password()
    reset_password(user, password, by=current_user.username)
    return render_template("auth/password_reset.html", user=user, password=password)


@bp.post("/<int:user_id>/reset-2fa")
@admin_required
def reset_second_factor(user_id):
    """Remove a user's second factor and recovery codes (they enrol again); their log-ins end."""
    user = get_user_or_404(user_id)
    totp.reset(user, by=current_user.username)
    flash(f"Second factor of {user.username} reset; their log-ins have ended.", "info")
    return redirect(url_for("users.index"))


@bp.get("/blocks")
@admin_required
def blocks():
    """List what refuses log-ins now: blocked addresses, names that must wait, locked accounts."""
    return render_template("auth/blocks.html", blocks=throttle.current_blocks())


@bp.post("/blocks/lift")
@admin_required
def lift_block():
    """Lift one current block at once (audited with the attempts it refused)."""
    kind, key = request.form.get("kind", ""), request.form.get("key", "")
    if kind not in ("ip", "account", "locked") or not key or len(key) > 80:
        abort(400, "No such block.")
    if throttle.lift(kind, key, current_user.username):
        flash(f"Lifted the block of {key}.", "info")
    else:
        flash(f"{key} was no longer blocked.", "info")
    return redirect(url_for("users.blocks"))
