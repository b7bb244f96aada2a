"""The second factor's pages: the code step of a log-in, the forced enrolment, and the user's own settings.

Codes typed at the log-in and on the settings page are checked under the same throttle as passwords (by
address and by name, or the lock in LOCKOUT_MODE=lock); enrolment codes are not, since the page shows the secret.
"""
import functools

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from app.audit.events import FAILURE, record

from . import logins, throttle, totp
from .views import complete_login

bp = Blueprint("twofactor", __name__)

BAD_CODE = "The code is wrong or was already used."
TOO_LATE = "That took too long, or your account changed meanwhile. Log in again."


class CodeForm(FlaskForm):
    """A six-digit code from the authenticator app, or a recovery code."""

    code = StringField("Code", validators=[DataRequired("Enter the code."), Length(max=40)])


class _Refused(Exception):
    """A code was not accepted: the words for the page, the status and the Retry-After seconds."""

    def __init__(self, message, status=401, retry=None):
        super().__init__(message)
        self.message, self.status, self.retry = message, status, retry


def _fail(user, name, reason, during):
    """Record a refused code (never the code) and count it like a failed password."""
    record("auth.2fa_failed", f"second factor of {user.username} refused during {during}", outcome=FAILURE,
           actor=user.username, user_id=user.id, details={"reason": reason, "during": during}, strict=False)
    throttle.count_failure(request.remote_addr, name, user, reason)


def _check_code(user, name, text, during):
    """Check a TOTP or recovery code under the log-in throttle; return (factor, codes left) or raise _Refused."""
    refused = throttle.refusal(request.remote_addr, name)
    if refused:
        if refused.kind == throttle.ACCOUNT:
            _fail(user, name, "throttled", during)
        raise _Refused(refused.message, 429, refused.seconds)
    if throttle.locked(user):
        _fail(user, name, "locked", during)
        raise _Refused(BAD_CODE)
    text = text.strip()
    if totp.recovery_shape(text):
        outcome, left = totp.use_recovery_code(user, text)
        if outcome == totp.OK:
            throttle.release(name)
            record("auth.recovery_code_used", f"{user.username} used a recovery code ({left} left)",
                   actor=user.username, user_id=user.id, details={"left": left, "during": during}, strict=False)
            return "recovery_code", left
        _fail(user, name, "used_recovery_code" if outcome == totp.USED else "wrong_recovery_code", during)
        raise _Refused(BAD_CODE)
    outcome = totp.use_totp(user, "".join(text.split()))
    if outcome == totp.OK:
        throttle.release(name)
        return "totp", None
    _fail(user, name, "replayed" if outcome == totp.REPLAYED else "wrong_code", during)
    raise _Refused(BAD_CODE)


def _restart():
    """Send a browser whose pending log-in ran out back to the log-in page."""
    totp.drop_pending()
    flash(TOO_LATE, "error")
    return redirect(url_for("auth.login"))


def _pending_step(enrol):
    """Give a log-in step this browser's pending log-in of its kind (user, typed name, next path) and the code form;
    a browser whose pending log-in ran out goes back to the log-in page."""
    def wrap(view):
        @functools.wraps(view)
        def step():
            found = totp.pending(enrol=enrol)
            return _restart() if found is None else view(*found, CodeForm())
        return step
    return wrap


@bp.route("/login/code", methods=["GET", "POST"])
@_pending_step(enrol=False)
def code(user, name, next_path, form):
    """Ask for the second factor of a log-in whose password was right; a right code completes it."""
    if not form.validate_on_submit():
        return render_template("auth/twofactor_code.html", form=form), 422 if request.method == "POST" else 200
    try:
        factor, left = _check_code(user, name, form.code.data, "log-in")
    except _Refused as refused:
        form.code.errors.append(refused.message)
        headers = {"Retry-After": str(refused.retry)} if refused.retry else {}
        return render_template("auth/twofactor_code.html", form=form), refused.status, headers
    complete_login(user, name, factor=factor)
    if left is not None:  # after complete_login, which starts a fresh session (and its flashes)
        _tell_codes_left(left)
    return redirect(next_path)


def _tell_codes_left(left):
    """Tell the user a recovery code was spent and how many are left; at three or fewer, urge new ones (a link)."""
    used = f"A recovery code was used; {left} left."
    if left > 3:
        flash(used, "info")
        return
    link = Markup('<a href="{}" id="make-new-codes">Make new recovery codes</a>').format(
        url_for("twofactor.settings") + "#new-codes")
    tail = "now: without any, a lost phone locks you out." if left == 0 else "before they run out."
    flash(Markup("{} {} {}").format(used, link, tail), "error")


@bp.route("/login/enrol", methods=["GET", "POST"])
@_pending_step(enrol=True)
def enrol(user, name, next_path, form):
    """Set up the second factor REQUIRE_2FA asks for before the log-in completes; the confirmed code completes it."""
    if not form.validate_on_submit():
        return _enrol_page(user, form, url_for("twofactor.enrol"), 422 if request.method == "POST" else 200)
    codes = totp.confirm(user, "".join(form.code.data.split()))
    if codes is None:
        return _wrong_enrolment_code(user, form, url_for("twofactor.enrol"))
    record("auth.2fa_enrolled", f"{user.username} enrolled a second factor (TOTP) at log-in", actor=user.username,
           user_id=user.id, details={"factor": "totp", "forced": current_app.config["REQUIRE_2FA"]}, strict=False)
    complete_login(user, name, factor="totp", enrolled=True)
    return render_template("auth/twofactor_codes.html", codes=codes, next_path=next_path)


def _enrol_page(user, form, action, status=200):
    """Render the enrolment page: the QR code as inline SVG, the secret as text, the confirm form."""
    secret = totp.secret_of(user)
    svg = totp.qr_svg(totp.provisioning_uri(user, secret))
    spaced = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return render_template("auth/twofactor_enrol.html", form=form, qr=svg, secret=spaced, action=action), status


def _wrong_enrolment_code(user, form, action):
    """Record a wrong confirmation code (not throttled: the page shows the secret) and show the page again."""
    record("auth.2fa_failed", f"enrolment code of {user.username} refused", outcome=FAILURE, actor=user.username,
           user_id=user.id, details={"reason": "wrong_code", "during": "enrolment"}, strict=False)
    form.code.errors.append("That code does not fit. Check the time on your phone and type the newest code.")
    return _enrol_page(user, form, action, 422)


@bp.get("/account/2fa")
@login_required
def settings():
    """Show the user's second factor: set it up, or make new recovery codes and turn it off."""
    user = current_user
    return render_template("auth/twofactor.html", form=CodeForm(), enabled=totp.enabled(user),
                           left=totp.codes_left(user) if totp.enabled(user) else 0,
                           required=totp.required_for(user))


@bp.post("/account/2fa/start")
@login_required
def start():
    """Make a fresh secret and show it for the user to add to their authenticator app."""
    user = current_user._get_current_object()
    if totp.enabled(user):
        return redirect(url_for("twofactor.settings"))
    totp.new_secret(user)
    return _enrol_page(user, CodeForm(formdata=None), url_for("twofactor.confirm"))


@bp.post("/account/2fa/confirm")
@login_required
def confirm():
    """Turn the second factor on with a code from the app; show the recovery codes once."""
    user = current_user._get_current_object()
    if totp.enabled(user) or user.totp_secret_enc is None:
        return redirect(url_for("twofactor.settings"))
    form = CodeForm()
    if not form.validate_on_submit():
        return _enrol_page(user, form, url_for("twofactor.confirm"), 422)
    codes = totp.confirm(user, "".join(form.code.data.split()))
    if codes is None:
        return _wrong_enrolment_code(user, form, url_for("twofactor.confirm"))
    record("auth.2fa_enrolled", f"{user.username} enrolled a second factor (TOTP)", details={"factor": "totp"},
           strict=False)
    logins.renew(user, "second_factor_changed")  # log-ins from before the factor end; this one gets a new token
    flash("Second factor on. Your log-ins from before it have ended; this browser stays logged in.", "info")
    return render_template("auth/twofactor_codes.html", codes=codes, next_path=url_for("twofactor.settings"))


def _checked(during):
    """Check the code typed on the settings page; return the user, or a page to answer with when refused."""
    user = current_user._get_current_object()
    form = CodeForm()
    if not totp.enabled(user):
        return None, redirect(url_for("twofactor.settings"))
    status, headers = 422, {}
    if form.validate_on_submit():
        try:
            _check_code(user, user.username, form.code.data, during)
            return user, None
        except _Refused as refused:
            form.code.errors.append(refused.message)
            status, headers = refused.status, {"Retry-After": str(refused.retry)} if refused.retry else {}
    page = render_template("auth/twofactor.html", form=form, enabled=True, left=totp.codes_left(user),
                           required=totp.required_for(user))
    return None, (page, status, headers)


@bp.post("/account/2fa/recovery-codes")
@login_required
def regenerate():
    """Replace the recovery codes with ten new ones (a current code needed); show them once."""
    user, refused = _checked("recovery_codes")
    if refused:
        return refused
    codes = totp.new_recovery_codes(user)
    record("auth.recovery_codes_regenerated", f"{user.username} made new recovery codes",
           details={"count": len(codes)}, strict=False)
    return render_template("auth/twofactor_codes.html", codes=codes, next_path=url_for("twofactor.settings"))


@bp.post("/account/2fa/disable")
@login_required
def disable():
    """Turn the second factor off (a current code needed; not while REQUIRE_2FA asks it of this user)."""
    if totp.required_for(current_user):
        abort(403, "A second factor is required for your account.")
    user, refused = _checked("disable")
    if refused:
        return refused
    totp.turn_off(user)
    record("auth.2fa_disabled", f"{user.username} turned their second factor off", strict=False)
    logins.renew(user, "second_factor_changed")
    flash("Second factor turned off. Your log-ins from before have ended; this browser stays logged in.", "info")
    return redirect(url_for("twofactor.settings"))
