"""Log in, log out and change password."""
from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user

from app.access import current_login
from app.audit.events import FAILURE, record
from app.extensions import db, login_manager

from . import logins, throttle, totp
from .accounts import find_user
from .forms import LoginForm, PasswordForm
from .models import LoginSession, User
from .oidc_rules import display_name
from .oidc_views import note_logout

bp = Blueprint("auth", __name__)

BAD_LOGIN = "Invalid username or password."
# Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Safari/", "Safari"), ("curl/", "curl"), ("python-requests", "Python requests"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"), ("Windows", "Windows"),
            ("Mac OS X", "macOS"), ("Linux", "Linux"))


@login_manager.user_loader
def load_user(token):
    """Return the user of a live log-in session (the database decides, on every request)."""
    return logins.load(token)


@bp.app_template_filter("browser")
def browser_name(user_agent):
    """Name the browser and system of a User-Agent in a few words ("Chrome on Linux")."""
    text = user_agent or ""
    name = next((label for token, label in _BROWSERS if token in text), "Unknown browser")
    system = next((label for token, label in _SYSTEMS if token in text), "")
    return f"{name} on {system}" if system else name


def _fail_login(username, user, reason):
    """Record a failed log-in and count it against the address and the name (the throttle)."""
    record("auth.login_failed", f"failed log in as {username}", outcome=FAILURE, actor=username,
           user_id=user.id if user else None, details={"reason": reason}, strict=False)
    throttle.count_failure(request.remote_addr, username, user, reason)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the log-in form and log the user in."""
    if current_user.is_authenticated:
        return redirect(url_for("terminals.index"))
    # --- single sign-on only (LOCAL_LOGIN=off, app/auth/oidc_views.py): no password is looked at ---
    if request.method == "POST" and current_app.config["LOCAL_LOGIN"] == "off":
        flash(f"Log-in with a password is turned off here: sign in with {display_name()}.", "error")
        return render_template("auth/login.html", form=LoginForm(formdata=None)), 403
    # --- end of single sign-on only ---
    form = LoginForm()
    if form.validate_on_submit():
        username = form.username.data.strip()
        refused = throttle.refusal(request.remote_addr, username)
        if refused:
            return _refuse(username, refused)
        user = find_user(username)
        if user is None:
            User.burn_password_check(form.password.data)
            _fail_login(username, None, "unknown_user")
        elif throttle.locked(user):
            User.burn_password_check(form.password.data)
            _fail_login(username, user, "locked")
        elif not user.check_password(form.password.data):
            _fail_login(username, user, "wrong_password")
        elif user.disabled:
            _fail_login(username, user, "disabled")
        else:
            # --- second factor (totp.py, totp_views.py): for a user with TOTP, or one REQUIRE_2FA asks
            # it of, the right password only opens the code (or enrolment) step, which ends in complete_login().
            if totp.enabled(user) or totp.required_for(user):
                throttle.release(username)
                step = totp.begin(user, username, logins.safe_next(request.args.get("next")))
                return redirect(url_for(step))
            # --- end of second factor ---
            complete_login(user, username)
            return redirect(logins.safe_next(request.args.get("next")))
        flash(BAD_LOGIN, "error")
        return render_template("auth/login.html", form=form), 401
    return render_template("auth/login.html", form=form), 422 if request.method == "POST" else 200


def complete_login(user, username, **details):
    """Finish a password log-in (after its second factor, if any): logged in, and the name's failures forgotten."""
    logins.log_in(user, details=details)
    throttle.forget_account(user, username)


def _refuse(username, refused):
    """Turn an attempt away unchecked: a blocked address writes nothing, a waiting name a failed log-in."""
    if refused.kind == throttle.ACCOUNT:
        user = find_user(username)
        _fail_login(username, user, "throttled")
    flash(refused.message, "error")
    form = LoginForm(formdata=None, username=username)
    return render_template("auth/login.html", form=form), 429, {"Retry-After": str(refused.seconds)}


@bp.post("/logout")
@login_required
def logout():
    """Log the user out: the log-in session ends on the server, so no copy of the cookie works."""
    login = current_login()
    logins.revoke(login, "logged_out", by=current_user.username)
    logout_user()
    session.clear()
    note_logout(login)  # a single sign-on log-in: the log-in page offers to sign out of the provider too
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Change the user's own password: every earlier log-in ends, this browser goes on under a new token."""
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
        required = user.must_change_password
        user.set_password(form.new.data)
        user.must_change_password = False
        db.session.commit()
        record("auth.password_changed", "password changed; earlier log-ins ended", strict=False,
               details={"required": True} if required else None)
        logins.renew(user, "password_changed")  # a copy of the cookie from before opens nothing now
        flash("Password changed. Your log-ins from before it have ended, with their terminals; this browser stays "
              "logged in.", "info")
        return redirect(url_for("terminals.index"))
    return render_template("auth/password.html", form=form)


# While an admin-chosen password waits to be replaced, only these answer; every other route leads to the form.
_WHILE_MUST_CHANGE = {"auth.change_password", "auth.logout", "auth.idle_status", "auth.stay_logged_in", "static"}


@bp.before_app_request
def require_own_password():
    """Send a user whose password an admin chose to the change form, whatever they asked for (terminals too)."""
    if request.endpoint in _WHILE_MUST_CHANGE or not current_user.is_authenticated:
        return None
    if not current_user.must_change_password:
        return None
    target = url_for("auth.change_password")
    if request.headers.get("HX-Request"):  # htmx would swap the form into a fragment: move the page instead
        return "", 204, {"HX-Redirect": target}
    return redirect(target)


@bp.app_context_processor
def login_clock():
    """Give every page the seconds its log-in has left and when to offer more, for the badge in the header."""
    login = current_login()
    return {"login_seconds_left": logins.seconds_left(login) if login else None,
            "login_warn_seconds": logins.WARN_SECONDS}


@bp.get("/account/idle")
def idle_status():
    """Tell the badge how many seconds the log-in has left (it asks as a poll, which is not activity)."""
    login = current_login()
    return {"left": logins.seconds_left(login) if login else 0}


@bp.post("/account/idle/extend")
@login_required
def stay_logged_in():
    """Count this click as activity: the idle limit starts again."""
    login = current_login()
    logins.note_activity(login)
    return {"left": logins.seconds_left(login)}


@bp.get("/account/sessions")
@login_required
def login_sessions():
    """List the user's active log-ins (an admin: everyone's), each with a button to end it."""
    query = logins.active().add_columns(User.username).join(User, User.id == LoginSession.user_id)
    if not current_user.is_admin:
        query = query.where(LoginSession.user_id == current_user.id)
    rows = db.session.execute(query).all()
    return render_template("auth/sessions.html", rows=rows, current=current_login())


@bp.post("/account/sessions/<handle>/end")
@login_required
def end_login_session(handle):
    """End one log-in session: the user's own, or anyone's for an admin; its terminals close too."""
    row = logins.get_active_or_404(handle, current_user)
    own = row.user_id == current_user.id
    logins.revoke(row, "ended_by_user" if own else "ended_by_admin", by=current_user.username)
    if row.id == current_login().id:
        logout_user()
        session.clear()
        return redirect(url_for("auth.login"))
    flash(f"Log-in {row.handle} ended.", "info")
    return redirect(url_for("auth.login_sessions"))
