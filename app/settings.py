"""The settings checked as a whole, once: the environment (config.Config) plus create_app's overrides.

Each reader in config.py checks its own variable as it reads it; the rules here span several settings, or need
what only the app knows (the action codes an alert may name).
"""
from authlib.common.security import is_secure_transport

from config import ConfigError
from config_values import public_url_origin

from .audit.catalogue import CATALOGUE, SEVERITY_ORDER


def validate(settings):
    """Check the settings as a whole (each reader in config.py checked its own value); fail naming the variable."""
    lock = settings["LOCKOUT_MODE"] == "lock"
    if lock and (settings["LOGIN_MAX_FAILURES"] > 10 or settings["LOGIN_LOCK_MINUTES"] < 30):
        raise ConfigError(f"LOCKOUT_MODE=lock (PCI DSS 8.3.4) needs LOGIN_MAX_FAILURES at most 10 (it is "
                          f"{settings['LOGIN_MAX_FAILURES']}) and LOGIN_LOCK_MINUTES at least 30 "
                          f"(it is {settings['LOGIN_LOCK_MINUTES']})")
    _check_sign_on(settings.get("OIDC_ISSUER"), settings)
    if settings.get("ALERT_WEBHOOK_URL") and len(settings.get("ALERT_WEBHOOK_SECRET") or "") < 16:
        raise ConfigError("ALERT_WEBHOOK_SECRET must be set (16 characters or more) when ALERT_WEBHOOK_URL is")
    unknown = [word for word in settings["ALERT_ACTIONS"] if word not in CATALOGUE and word not in SEVERITY_ORDER]
    if unknown:
        raise ConfigError(f"ALERT_ACTIONS names no such action: {', '.join(unknown)} (see docs/audit.md)")
    limit = settings["MAX_TERMINALS_PER_WORKER"]
    if not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"MAX_TERMINALS_PER_WORKER={limit!r} must be a whole number >= 1 "
                          "(by default it comes from GATEHOUSE_WORKER_CONNECTIONS)")
    hops = settings["TRUSTED_PROXY_HOPS"]
    if not isinstance(hops, int) or hops < 0:
        raise ConfigError(f"TRUSTED_PROXY_HOPS={hops!r} must be a whole number >= 0")
    if settings.get("PUBLIC_URL"):
        settings["PUBLIC_URL"] = public_url_origin("PUBLIC_URL", settings["PUBLIC_URL"])


def _check_sign_on(issuer, settings):
    """Refuse single sign-on settings that cannot work: no way to log in at all, or an issuer that is no http(s)."""
    if settings.get("LOCAL_LOGIN") == "off" and not issuer:
        raise ConfigError("LOCAL_LOGIN=off needs OIDC_ISSUER (single sign-on), or nobody could log in")
    if issuer and not (is_secure_transport(issuer) and issuer.startswith(("https://", "http://"))):
        raise ConfigError(f"OIDC_ISSUER={issuer!r} must be an https:// address (http:// only on loopback)")
    if issuer and not settings.get("OIDC_CLIENT_ID"):
        raise ConfigError("OIDC_CLIENT_ID must be set when OIDC_ISSUER is")
