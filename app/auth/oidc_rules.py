"""Single sign-on's refusals: shared by the flow (oidc_views.py, oidc_client.py) and the
matching of people (oidc_people.py)."""
from flask import current_app
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError

# Why a single sign-on was refused: the code goes into auth.login_failed's details.reason.
REASONS = {
    "state_mismatch": "the sign-in did not start in this browser, or was used already",
    "state_replayed": "the sign-in's answer was used already (a replayed callback)",
    "bad_token": "the provider's ID token failed its check",
    "provider_error": "the provider did not sign the person in",
    "provider_unreachable": "the provider could not be reached",
    "not_allowed": "no Gatehouse user for this person (OIDC_AUTO_CREATE is off)",
    "disabled": "the user is disabled in Gatehouse",
    "username_taken": "the name belongs to another Gatehouse account",
}


class Refused(Exception):
    """A single sign-on that does not log anyone in: why (a REASONS code), what the person reads, the status."""

    def __init__(self, reason, message, status, *, actor=None, user=None, details=None):
        super().__init__(message)
        self.reason, self.message, self.status = reason, message, status
        self.actor, self.user, self.details = actor, user, details or {}


def enabled():
    """Say whether single sign-on is configured."""
    return bool(current_app.config.get("OIDC_ISSUER"))


def display_name():
    """Return the provider's name as people know it (OIDC_DISPLAY_NAME)."""
    return current_app.config["OIDC_DISPLAY_NAME"]


def problem_of(exc):
    """Name what an ID token failed: expired, audience, issuer, nonce, signature, or the error's own code."""
    if isinstance(exc, ExpiredTokenError):
        return "expired"
    if isinstance(exc, BadSignatureError):
        return "signature"
    if isinstance(exc, ClaimError):
        return {"aud": "audience", "azp": "audience", "iss": "issuer"}.get(exc.claim, exc.claim)
    return exc.error
