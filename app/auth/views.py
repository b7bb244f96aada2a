"""Log in, log out and change password."""
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from app.audit.events import FAILURE, AuditWriteError, record
from app.dbtypes import now_utc
from app.extensions import db, login_manager

from .forms import LoginForm, PasswordForm
from .models import User

bp = Blueprint("auth", __name__)

BAD_LOGIN = "Invalid username or password."


@login_manager.user_loader
def load_user(session_id):
    """Return the user of a login session, or None once its epoch is stale."""
    user_id, _, epoch = session_id.partition(":")
    if not user_id.isdigit() or not epoch.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_epoch != int(epoch) or user.disabled:
        return None
    return user


def _safe_next(target):
    """Return target if it is a path on this site, else the home page."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("terminals.index")


def _fail_login(username, user, reason):
    """Record a failed log-in; lock the account after too many."""
    record("auth.login_failed", f"failed log in as {username}", outcome=FAILURE, actor=username,
           user_id=user.id if user else None, details={"reason": reason}, strict=False)
    if user is None or reason == "locked":
        return
    user.failed_logins += 1
    if user.failed_logins >= current_app.config["LOGIN_MAX_FAILURES"]:
        minutes = current_app.config["LOGIN_LOCK_MINUTES"]
        user.locked_until = now_utc() + timedelta(minutes=minutes)
        user.failed_logins = 0
        db.session.commit()
        record("auth.locked", f"account {username} locked for {minutes} minutes after repeated failed log-ins",
               outcome=FAILURE, actor=username, user_id=user.id, details={"minutes": minutes}, strict=False)
    else:
        db.session.commit()


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the log-in form and log the user in."""
    if current_user.is_authenticated:
        return redirect(url_for("terminals.index"))
    form = LoginForm()
    if form.validate_on_submit():
        username = form.username.data.strip()
        user = db.session.scalar(select(User).filter_by(username=username))
        if user is None:
            User.burn_password_check(form.password.data)
            _fail_login(username, None, "unknown_user")
        elif user.locked_until and user.locked_until > now_utc():
            User.burn_password_check(form.password.data)
            _fail_login(username, user, "locked")
        elif not user.check_password(form.password.data):
            _fail_login(username, user, "wrong_password")
        elif user.disabled:
            _fail_login(username, user, "disabled")
        else:
            # Fail closed: a log-in that cannot be audited does not happen.
            try:
                record("auth.login", "user logged in", actor=user.username, user_id=user.id)
            except AuditWriteError:
                abort(503, "The audit trail cannot be written; log-in is refused until it can.")
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = now_utc()
            db.session.commit()
            session.clear()
            login_user(user)
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")))
        flash(BAD_LOGIN, "error")
        return render_template("auth/login.html", form=form), 401
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    """Log the user out."""
    record("auth.logout", "user logged out", strict=False)
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Change the user's own password; every other log-in session of the user ends."""
    form = PasswordForm()
    if request.method == "POST":
        problem = None
        if not form.validate_on_submit():
            problem = "invalid_form"
        elif not current_user.check_password(form.current.data):
            problem = "wrong_current_password"
            form.current.errors.append("The current password is wrong.")
        elif len(form.new.data) < current_app.config["PASSWORD_MIN_LENGTH"]:
            problem = "too_short"
            form.new.errors.append(f"Use at least {current_app.config['PASSWORD_MIN_LENGTH']} characters.")
        elif form.new.data == form.current.data:
            problem = "unchanged"
            form.new.errors.append("The new password must differ from the current one.")
        if problem:
            record("auth.password_change_failed", "password change failed", outcome=FAILURE,
                   details={"reason": problem}, strict=False)
            return render_template("auth/password.html", form=form), 422
        user = current_user._get_current_object()
        user.set_password(form.new.data)
        user.session_epoch += 1
        db.session.commit()
        login_user(user)  # this session carries the new epoch; all others are now stale
        session.permanent = True
        record("auth.password_changed", "password changed; other sessions ended", strict=False)
        flash("Password changed. Your other sessions have been logged out.", "info")
        return redirect(url_for("terminals.index"))
    return render_template("auth/password.html", form=form)
