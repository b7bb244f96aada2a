"""Single sign-on's client side of the protocol: the provider's discovery document, and the ID token of a callback.

Authlib's Flask client does the protocol: discovery from OIDC_ISSUER's .well-known/openid-configuration (at
the first click, not at start-up), the authorization code flow with PKCE (S256), state and nonce, and the
ID token's signature (the provider's published keys), issuer, audience and expiry. Every problem becomes a
Refused with its reason; nothing secret reaches a log.
"""
import logging
import re

import requests
from authlib.integrations.base_client import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import OAuth
from flask import current_app, request, session
from joserfc.errors import JoseError

from . import oidc_states
from .oidc_rules import Refused, display_name, problem_of
from .oidc_states import FLOW_SECONDS, SealedState

log = logging.getLogger("gatehouse.auth")
# Authlib writes the PKCE verifier into its DEBUG lines: never let them out, whatever LOG_LEVEL or a root logger says.
logging.getLogger("authlib").setLevel(logging.INFO)

TIMEOUT = 5  # seconds for every request to the provider: a provider that is down gives an error page quickly
LEEWAY = 60  # seconds of clock difference tolerated on the ID token's times
_EXTENSION = "gatehouse.oidc"


def client():
    """Return this app's Authlib client (registered at first use; discovery happens at its first request)."""
    app = current_app._get_current_object()
    found = app.extensions.get(_EXTENSION)
    if found is None:
        config = app.config
        scopes = config["OIDC_SCOPES"].split()
        oauth = OAuth(app, cache=SealedState())
        found = oauth.register(
            "sso", client_id=config["OIDC_CLIENT_ID"], client_secret=config.get("OIDC_CLIENT_SECRET"),
            server_metadata_url=config["OIDC_ISSUER"].rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={
                "scope": " ".join(["openid"] + [scope for scope in scopes if scope != "openid"]),
                "code_challenge_method": "S256", "default_timeout": TIMEOUT,
                # Without a secret Gatehouse is a public client: PKCE alone protects the code.
                "token_endpoint_auth_method": "client_secret_basic" if config.get("OIDC_CLIENT_SECRET") else "none",
            })
        found.framework.expires_in = FLOW_SECONDS  # Authlib's own marker of each flow in the session
        app.extensions[_EXTENSION] = found
    return found


def metadata():
    """Return the provider's discovery document, fetched once per process; raise Refused when it cannot be had."""
    sso = client()
    try:
        document = sso.load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        log.warning("single sign-on: discovery at %s failed: %s", current_app.config["OIDC_ISSUER"],
                    type(exc).__name__)
        raise Refused("provider_unreachable", f"{display_name()} cannot be reached right now. Try again in a "
                      "moment; if it stays so, tell an admin.", 503) from None
    # OpenID Connect Discovery 1.0, section 4.3: the document must name the issuer it was fetched for.
    if document.get("issuer", "").rstrip("/") != current_app.config["OIDC_ISSUER"].rstrip("/"):
        sso.server_metadata.clear()  # ask again next time: it may be fixed
        log.warning("single sign-on: %s names issuer %r, not OIDC_ISSUER", current_app.config["OIDC_ISSUER"],
                    document.get("issuer"))
        raise Refused("provider_unreachable", f"{display_name()} is not set up as Gatehouse expects; tell an admin "
                      "(the provider's issuer differs from OIDC_ISSUER).", 503)
    return document


def verified_claims():
    """Return the ID token's claims after Authlib has checked state, signature, issuer, audience, expiry, nonce."""
    if request.args.get("error"):
        error = re.sub(r"[^\w.-]", "", request.args["error"])[:64]
        raise Refused("provider_error", f"{display_name()} did not sign you in ({error}).", 401,
                      details={"error": error})
    issuer = metadata()["issuer"]
    sent_issuer = request.args.get("iss")  # RFC 9207: a provider that names itself in the answer must be ours
    if sent_issuer is not None and sent_issuer != issuer:
        raise Refused("bad_token", f"The answer did not come from {display_name()}; you are not logged in.", 401,
                      details={"problem": "issuer"})
    sso = client()
    _claim_state(sso)
    token = _exchange(sso, issuer)
    claims = dict(token.get("userinfo") or {})
    if not claims.get("sub"):
        raise Refused("bad_token", f"{display_name()} sent no ID token.", 401, details={"problem": "no_id_token"})
    return _with_userinfo(sso, token, claims)


def _claim_state(sso):
    """Mark this browser's state used before its code is exchanged; refuse a second use (a replayed callback)."""
    state = request.args.get("state")
    if state and sso.framework.get_state_data(session, state) is not None \
            and not oidc_states.claim(state, FLOW_SECONDS):
        raise Refused("state_replayed", "This sign-in was used already; you are not logged in. Start again.", 400)


def _exchange(sso, issuer):
    """Exchange the callback's code for the tokens and check the ID token; map every failure to a Refused."""
    options = {"iss": {"essential": True, "value": issuer},
               # Authlib checks aud only through azp; OpenID Connect Core 3.1.3.7 wants our client id in aud.
               "aud": {"essential": True, "values": [sso.client_id]}}
    try:
        return sso.authorize_access_token(claims_options=options, leeway=LEEWAY)
    except MismatchingStateError:
        raise Refused("state_mismatch", "This sign-in was not started in this browser, has expired or was used "
                      "already. Start again.", 400) from None
    except OAuthError as exc:  # the token endpoint refused the code (used, expired, another client's)
        raise Refused("bad_token", f"{display_name()} did not accept the sign-in. Start again.", 401,
                      details={"problem": re.sub(r"[^\w.-]", "", exc.error or "")[:64]}) from None
    except requests.RequestException as exc:
        log.warning("single sign-on: the token request to %s failed: %s", current_app.config["OIDC_ISSUER"],
                    type(exc).__name__)
        raise Refused("provider_unreachable", f"{display_name()} cannot be reached right now. Try again in a "
                      "moment.", 503) from None
    except JoseError as exc:
        raise Refused("bad_token", f"The answer of {display_name()} failed Gatehouse's checks; you are not "
                      "logged in. Tell an admin if it happens again.", 401,
                      details={"problem": problem_of(exc)}) from None


def _with_userinfo(sso, token, claims):
    """Fill the name or groups claim from the userinfo endpoint when the ID token lacks it (same subject only)."""
    config = current_app.config
    wanted = [config["OIDC_USERNAME_CLAIM"]] + ([config["OIDC_GROUPS_CLAIM"]] if config.get("OIDC_ADMIN_GROUP") else [])
    if all(name in claims for name in wanted) or not sso.server_metadata.get("userinfo_endpoint"):
        return claims
    try:
        info = sso.userinfo(token=token)
    except (requests.RequestException, OAuthError, ValueError) as exc:
        log.warning("single sign-on: userinfo failed (%s); going on with the ID token's claims", type(exc).__name__)
        return claims
    if info.get("sub") != claims["sub"]:  # OpenID Connect Core 5.3.2: otherwise the answer must not be used
        return claims
    return {**info, **claims}
