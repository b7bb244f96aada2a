"""Single sign-on with an OpenID Connect provider: /login/oidc, its callback, and the offer to sign out there too.

The protocol is oidc_client.py's (Authlib); the flow's state is oidc_states.py's. Gatehouse then matches the
person by issuer + subject, creates them on first log-in when OIDC_AUTO_CREATE=on, takes the role from the
groups claim when OIDC_ADMIN_GROUP is set (oidc_people.py), and logs them in through logins.log_in(method="oidc"),
so revocation, the idle timeout and everything else apply as to a password log-in. The provider does the
second factor: Gatehouse's own (TOTP) is for local accounts.

Nothing secret reaches a log, an audit event or a page; the flow's state, nonce and PKCE verifier travel in
the session cookie sealed with AES-GCM, never readable there.
"""
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user

from app.audit.events import FAILURE, record
from app.origins import public_origin

from . import logins
from .forms import LoginForm
from .oidc_people import match
from .oidc_rules import REASONS, Refused, display_name, enabled

bp = Blueprint("oidc", __name__)
_SIGNED_OUT = "oidc_signed_out"  # session key: this browser just logged out of a single sign-on log-in


def _protocol():
    """oidc_client.py, loaded on first use: Authlib and requests (about 9 MiB) stay out of a node without it."""
    from . import oidc_client

    return oidc_client


@bp.before_request
def _only_when_configured():
    """Answer 404 for every route here while single sign-on is not configured."""
    if not enabled():
        abort(404)


@bp.get("/login/oidc")
def start():
    """Send the browser to the provider to sign in (state, nonce and the PKCE verifier sealed in the session)."""
    if current_user.is_authenticated:
        return redirect(url_for("terminals.index"))
    try:
        _protocol().metadata()
    except Refused as refused:
        return _refuse(refused)
    session["oidc_next"] = logins.safe_next(request.args.get("next"))
    callback_url = public_origin() + url_for("oidc.callback")  # as registered at the provider
    return _protocol().client().authorize_redirect(callback_url)


@bp.get("/login/oidc/callback")
def callback():
    """Finish the sign-in: check state, exchange the code, verify the ID token, match the user, log them in."""
    if current_user.is_authenticated:  # the browser's back button: nothing to do
        return redirect(url_for("terminals.index"))
    try:
        claims = _protocol().verified_claims()
        user = match(claims)
    except Refused as refused:
        return _refuse(refused)
    target = session.get("oidc_next") or url_for("terminals.index")
    logins.log_in(user, method="oidc", details={"provider": claims["iss"], "subject": claims["sub"]})
    return redirect(logins.safe_next(target))


def _refuse(refused):
    """Record a refused single sign-on (auth.login_failed with the reason) and show the log-in page with why."""
    actor = refused.actor or "unknown"
    record("auth.login_failed", f"failed single sign-on as {actor}: {REASONS[refused.reason]}", outcome=FAILURE,
           actor=actor, user_id=refused.user.id if refused.user else None,
           details={"reason": refused.reason, "method": "oidc", "provider": current_app.config["OIDC_ISSUER"],
                    **refused.details}, strict=False)
    flash(refused.message, "error")
    return render_template("auth/login.html", form=LoginForm(formdata=None)), refused.status


def note_logout(login):
    """After a log-out of a single sign-on log-in, let the log-in page offer to sign out of the provider too."""
    if login is None or login.method != "oidc" or not enabled():
        return
    try:
        if _protocol().metadata().get("end_session_endpoint"):
            session[_SIGNED_OUT] = True
    except Refused:
        pass  # the provider cannot be reached: there is nothing to offer


@bp.get("/logout/oidc")  # a link: a form's POST could not redirect to another site under CSP form-action 'self'
def provider_logout():
    """Send the browser to the provider's end_session_endpoint (RP-initiated log-out), back to the log-in page."""
    session.pop(_SIGNED_OUT, None)
    try:
        endpoint = _protocol().metadata().get("end_session_endpoint")
    except Refused as refused:
        flash(refused.message, "error")
        return redirect(url_for("auth.login"))
    if not endpoint:
        return redirect(url_for("auth.login"))
    # No id_token_hint: the ID token is kept nowhere; client_id tells the provider whose address to trust.
    url = _protocol().client().create_logout_url(post_logout_redirect_uri=public_origin() + url_for("auth.login"),
                                     client_id=current_app.config["OIDC_CLIENT_ID"])["url"]
    return redirect(url)


@bp.app_context_processor
def single_sign_on():
    """Give the log-in page the single sign-on button's facts (None without OIDC_ISSUER)."""
    if not enabled():
        return {"sso": None}
    return {"sso": {"name": display_name(), "local_login": current_app.config["LOCAL_LOGIN"] == "on",
                    "signed_out": bool(session.get(_SIGNED_OUT))}}
