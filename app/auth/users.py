"""User administration (admins only): create, disable, change role, delete."""
import re

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select

from app.access import admin_required
from app.audit.events import record
from app.extensions import db

from . import sessions
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


def _page(form, status=200):
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
        username = form.username.data.strip()
        minimum = current_app.config["PASSWORD_MIN_LENGTH"]
        if not re.match(r"^[A-Za-z0-9._@-]{1,64}$", username):
            form.username.errors.append("Use letters, digits and . _ @ - only.")
        elif db.session.scalar(select(User).filter_by(username=username)):
            form.username.errors.append("This username is taken.")
        elif len(form.password.data) < minimum:
            form.password.errors.append(f"Use at least {minimum} characters.")
        else:
            user = User(username=username, is_admin=form.is_admin.data)
            user.set_password(form.password.data)
            db.session.add(user)
            db.session.commit()
            record("user.created", f"created user {username}", details={"username": username, "admin": user.is_admin})
            flash(f"User {username} created.", "info")
            return redirect(url_for("users.index"))
    return _page(form, 422)


@bp.post("/<int:user_id>/disable")
@admin_required
def toggle_disabled(user_id):
    """Disable a user (their sessions end at once) or enable them again."""
    user = get_user_or_404(user_id)
    user.disabled = not user.disabled
    db.session.commit()
    if user.disabled:
        record("user.disabled", f"disabled user {user.username}", details={"username": user.username})
        sessions.revoke_user(user.id, "user_disabled", by=current_user.username)
    else:
        record("user.updated", f"enabled user {user.username}", details={"username": user.username,
                                                                         "fields": ["disabled"]})
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/role")
@admin_required
def toggle_admin(user_id):
    """Give or take the admin role."""
    user = get_user_or_404(user_id)
    user.is_admin = not user.is_admin
    db.session.commit()
    role = "admin" if user.is_admin else "user"
    record("user.role_changed", f"changed role of {user.username} to {role}",
           details={"username": user.username, "role": role})
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/delete")
@admin_required
def delete(user_id):
    """Delete a user and their devices; their audit events stay, under their name."""
    user = get_user_or_404(user_id)
    username = user.username
    sessions.revoke_user(user.id, "user_deleted", by=current_user.username)
    db.session.delete(user)
    db.session.commit()
    record("user.deleted", f"deleted user {username}", details={"username": username})
    flash(f"User {username} deleted.", "info")
    return redirect(url_for("users.index"))
