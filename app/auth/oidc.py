"""Single sign-on with an OpenID Connect provider: /login/oidc, its callback, and the offer to sign out there too.

Authlib's Flask client does the protocol: discovery from OIDC_ISSUER's .well-known/openid-configuration (at
the first click, not at start-up), the authorization code flow with PKCE (S256), state and nonce, and the
ID token's signature (the provider's published keys), issuer, audience and expiry. Gatehouse then matches the
person by issuer + subject, creates them on first log-in when OIDC_AUTO_CREATE=on, takes the role from the
groups claim when OIDC_ADMIN_GROUP is set, and logs them in through sessions.start(method="oidc"), so
revocation, the idle timeout and everything else apply as to a password log-in. The provider does the
second factor: Gatehouse's own (TOTP) is for local accounts.

Nothing secret reaches a log, an audit event or a page; the flow's state, nonce and PKCE verifier travel in
the session cookie sealed with AES-GCM, never readable there.
"""
import logging
import re
import time

import click
import requests
from authlib.integrations.base_client import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from joserfc.errors import JoseError

from app.audit.events import FAILURE, record
from app.devices.secrets import SecretError, decrypt, encrypt
from app.extensions import db
from app.origins import public_origin

from . import oidc_states, sessions
from .accounts import find_user
from .forms import LoginForm
# Matching people and the settings' rules live beside; check_settings and username_from are used from here too.
from .oidc_people import linked_user, match, username_from  # noqa: F401
from .oidc_rules import REASONS, Refused, check_settings, display_name, enabled, problem_of  # noqa: F401

bp = Blueprint("oidc", __name__)
log = logging.getLogger("gatehouse.auth")
# Authlib writes the PKCE verifier into its DEBUG lines: never let them out, whatever LOG_LEVEL or a root logger says.
logging.getLogger("authlib").setLevel(logging.INFO)

TIMEOUT = 5  # seconds for every request to the provider: a provider that is down gives an error page quickly
LEEWAY = 60  # seconds of clock difference tolerated on the ID token's times
FLOW_SECONDS = 600  # a sign-in not finished within this long starts again (state_mismatch)
_EXTENSION = "gatehouse.oidc"
_SIGNED_OUT = "oidc_signed_out"  # session key: this browser just logged out of a single sign-on log-in
class _SealedState:
    """Authlib's state cache, kept in the session cookie but sealed (AES-GCM): the PKCE verifier and nonce stay
    unreadable there, and no server-side store is needed (any worker or node finishes the flow)."""

    @staticmethod
    def get(key):
        """Return the sealed value of key, opened, or None (also once it is older than FLOW_SECONDS)."""
        entry = session.get(key + "_sealed")
        try:
            return decrypt(entry["blob"], key) if entry and entry["exp"] > time.time() else None
        except (SecretError, KeyError, TypeError):
            return None

    @staticmethod
    def set(key, value, expires=None):
        """Seal value under key (the key, naming the state, is bound in); Authlib's sweep drops it with its state."""
        session[key + "_sealed"] = {"blob": encrypt(value, key), "exp": time.time() + FLOW_SECONDS}

    @staticmethod
    def delete(key):
        """Forget the value of key."""
        session.pop(key + "_sealed", None)


def _client():
    """Return this app's Authlib client (registered at first use; discovery happens at its first request)."""
    app = current_app._get_current_object()
    client = app.extensions.get(_EXTENSION)
    if client is None:
        config = app.config
        scopes = config["OIDC_SCOPES"].split()
        oauth = OAuth(app, cache=_SealedState())
        client = oauth.register(
            "sso", client_id=config["OIDC_CLIENT_ID"], client_secret=config.get("OIDC_CLIENT_SECRET"),
            server_metadata_url=config["OIDC_ISSUER"].rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={
                "scope": " ".join(["openid"] + [scope for scope in scopes if scope != "openid"]),
                "code_challenge_method": "S256", "default_timeout": TIMEOUT,
                # Without a secret Gatehouse is a public client: PKCE alone protects the code.
                "token_endpoint_auth_method": "client_secret_basic" if config.get("OIDC_CLIENT_SECRET") else "none",
            })
        client.framework.expires_in = FLOW_SECONDS  # Authlib's own marker of each flow in the session
        app.extensions[_EXTENSION] = client
    return client


def _metadata():
    """Return the provider's discovery document, fetched once per process; raise Refused when it cannot be had."""
    client = _client()
    try:
        metadata = client.load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        log.warning("single sign-on: discovery at %s failed: %s", current_app.config["OIDC_ISSUER"],
                    type(exc).__name__)
        raise Refused("provider_unreachable", f"{display_name()} cannot be reached right now. Try again in a "
                      "moment; if it stays so, tell an admin.", 503) from None
    # OpenID Connect Discovery 1.0, section 4.3: the document must name the issuer it was fetched for.
    if metadata.get("issuer", "").rstrip("/") != current_app.config["OIDC_ISSUER"].rstrip("/"):
        client.server_metadata.clear()  # ask again next time: it may be fixed
        log.warning("single sign-on: %s names issuer %r, not OIDC_ISSUER", current_app.config["OIDC_ISSUER"],
                    metadata.get("issuer"))
        raise Refused("provider_unreachable", f"{display_name()} is not set up as Gatehouse expects; tell an admin "
                      "(the provider's issuer differs from OIDC_ISSUER).", 503)
    return metadata


def _redirect_uri():
    """Return the callback address the provider sends people back to (registered there)."""
    return public_origin() + url_for("oidc.callback")


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
        _metadata()
    except Refused as refused:
        return _refuse(refused)
    session["oidc_next"] = _safe_next(request.args.get("next"))
    return _client().authorize_redirect(_redirect_uri())


@bp.get("/login/oidc/callback")
def callback():
    """Finish the sign-in: check state, exchange the code, verify the ID token, match the user, log them in."""
    if current_user.is_authenticated:  # the browser's back button: nothing to do
        return redirect(url_for("terminals.index"))
    try:
        claims = _verified_claims()
        user = match(claims)
    except Refused as refused:
        return _refuse(refused)
    target = session.get("oidc_next") or url_for("terminals.index")
    sessions.log_in(user, method="oidc", details={"provider": claims["iss"], "subject": claims["sub"]})
    return redirect(_safe_next(target))


def _safe_next(target):
    """Return target if it is a path on this site, else the home page (the password log-in's rule)."""
    from .views import _safe_next as rule  # views imports this module: the rule is looked up at call time

    return rule(target)


def _verified_claims():
    """Return the ID token's claims after Authlib has checked state, signature, issuer, audience, expiry, nonce."""
    issuer = current_app.config["OIDC_ISSUER"]
    if request.args.get("error"):
        error = re.sub(r"[^\w.-]", "", request.args["error"])[:64]
        raise Refused("provider_error", f"{display_name()} did not sign you in ({error}).", 401,
                      details={"error": error})
    metadata = _metadata()
    sent_issuer = request.args.get("iss")  # RFC 9207: a provider that names itself in the answer must be ours
    if sent_issuer is not None and sent_issuer != metadata["issuer"]:
        raise Refused("bad_token", f"The answer did not come from {display_name()}; you are not logged in.", 401,
                      details={"problem": "issuer"})
    client = _client()
    options = {"iss": {"essential": True, "value": metadata["issuer"]},
               # Authlib checks aud only through azp; OpenID Connect Core 3.1.3.7 wants our client id in aud.
               "aud": {"essential": True, "values": [client.client_id]}}
    _claim_state(client)
    try:
        token = client.authorize_access_token(claims_options=options, leeway=LEEWAY)
    except MismatchingStateError:
        raise Refused("state_mismatch", "This sign-in was not started in this browser, has expired or was used "
                      "already. Start again.", 400) from None
    except OAuthError as exc:  # the token endpoint refused the code (used, expired, another client's)
        raise Refused("bad_token", f"{display_name()} did not accept the sign-in. Start again.", 401,
                      details={"problem": re.sub(r"[^\w.-]", "", exc.error or "")[:64]}) from None
    except requests.RequestException as exc:
        log.warning("single sign-on: the token request to %s failed: %s", issuer, type(exc).__name__)
        raise Refused("provider_unreachable", f"{display_name()} cannot be reached right now. Try again in a "
                      "moment.", 503) from None
    except JoseError as exc:
        raise Refused("bad_token", f"The answer of {display_name()} failed Gatehouse's checks; you are not "
                      "logged in. Tell an admin if it happens again.", 401,
                      details={"problem": problem_of(exc)}) from None
    claims = dict(token.get("userinfo") or {})
    if not claims.get("sub"):
        raise Refused("bad_token", f"{display_name()} sent no ID token.", 401, details={"problem": "no_id_token"})
    return _with_userinfo(client, token, claims)


def _claim_state(client):
    """Mark this browser's state used before its code is exchanged; refuse a second use (a replayed callback)."""
    state = request.args.get("state")
    if state and client.framework.get_state_data(session, state) is not None \
            and not oidc_states.claim(state, FLOW_SECONDS):
        raise Refused("state_replayed", "This sign-in was used already; you are not logged in. Start again.", 400)


def _with_userinfo(client, token, claims):
    """Fill the name or groups claim from the userinfo endpoint when the ID token lacks it (same subject only)."""
    config = current_app.config
    wanted = [config["OIDC_USERNAME_CLAIM"]] + ([config["OIDC_GROUPS_CLAIM"]] if config.get("OIDC_ADMIN_GROUP") else [])
    if all(name in claims for name in wanted) or not client.server_metadata.get("userinfo_endpoint"):
        return claims
    try:
        info = client.userinfo(token=token)
    except (requests.RequestException, OAuthError, ValueError) as exc:
        log.warning("single sign-on: userinfo failed (%s); going on with the ID token's claims", type(exc).__name__)
        return claims
    if info.get("sub") != claims["sub"]:  # OpenID Connect Core 5.3.2: otherwise the answer must not be used
        return claims
    return {**info, **claims}


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
        if _metadata().get("end_session_endpoint"):
            session[_SIGNED_OUT] = True
    except Refused:
        pass  # the provider cannot be reached: there is nothing to offer


@bp.get("/logout/oidc")  # a link: a form's POST could not redirect to another site under CSP form-action 'self'
def provider_logout():
    """Send the browser to the provider's end_session_endpoint (RP-initiated log-out), back to the log-in page."""
    session.pop(_SIGNED_OUT, None)
    try:
        endpoint = _metadata().get("end_session_endpoint")
    except Refused as refused:
        flash(refused.message, "error")
        return redirect(url_for("auth.login"))
    if not endpoint:
        return redirect(url_for("auth.login"))
    # No id_token_hint: the ID token is kept nowhere; client_id tells the provider whose address to trust.
    url = _client().create_logout_url(post_logout_redirect_uri=public_origin() + url_for("auth.login"),
                                      client_id=current_app.config["OIDC_CLIENT_ID"])["url"]
    return redirect(url)


@bp.app_context_processor
def single_sign_on():
    """Give the log-in page the single sign-on button's facts (None without OIDC_ISSUER)."""
    if not enabled():
        return {"sso": None}
    return {"sso": {"name": display_name(), "local_login": current_app.config["LOCAL_LOGIN"] == "on",
                    "signed_out": bool(session.get(_SIGNED_OUT))}}


@bp.cli.command("link")
@click.argument("username")
@click.argument("subject")
def link(username, subject):
    """Link an existing user to the provider's subject (sub), so that person's single sign-on logs in as them."""
    if not enabled():
        raise click.ClickException("OIDC_ISSUER is not set")
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    issuer = current_app.config["OIDC_ISSUER"]
    other = linked_user(subject)
    if other is not None and other.id != user.id:
        raise click.ClickException(f"subject {subject!r} is linked to {other.username} already")
    user.oidc_issuer, user.oidc_subject = issuer, subject
    db.session.commit()
    record("user.updated", f"linked user {user.username} to single sign-on from the console", actor="console",
           details={"username": user.username, "fields": ["oidc_subject"], "provider": issuer, "subject": subject})
    click.echo(f"linked {user.username} to {subject} at {issuer}")
