"""Gatehouse settings: one class, one line per setting, read from the environment."""
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent
load_dotenv(BASE_DIR / ".env")


# RFC 5424 facility codes a site may choose for the audit messages.
SYSLOG_FACILITIES = {"auth": 4, "authpriv": 10, "local0": 16, "local1": 17, "local2": 18, "local3": 19,
                     "local4": 20, "local5": 21, "local6": 22, "local7": 23}


class ConfigError(ValueError):
    """A setting has a value that makes no sense."""


def _int(name, default, minimum=None, maximum=None):
    """Read an integer setting and fail fast, naming the variable, on nonsense."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name}={raw!r} must be between {minimum} and {maximum}")
    return value


def _str(name, default=None):
    """Read a text setting; an empty value counts as unset."""
    raw = os.environ.get(name)
    return raw if raw not in (None, "") else default


def _choice(name, default, choices):
    """Read a setting that takes one of a few words."""
    value = (_str(name, default)).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={os.environ.get(name)!r} must be one of {', '.join(choices)}")
    return value


def _syslog_targets(name):
    """Read comma-separated tcp://, tls:// or udp://host:port syslog targets; fail naming the variable."""
    targets = []
    for raw in (_str(name, "") or "").split(","):
        if not raw.strip():
            continue
        try:
            parts = urlsplit(raw.strip())
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme.lower() not in ("tcp", "tls", "udp") or not parts.hostname or not port \
                or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username is not None:
            raise ConfigError(f"{name}={os.environ.get(name)!r}: {raw.strip()!r} is not tcp://, tls:// or "
                              "udp://host:port")
        targets.append(f"{parts.scheme.lower()}://{parts.hostname}:{port}")
    return tuple(dict.fromkeys(targets))


# Events that alert by default: every critical one (a lockout, a host-key mismatch, a failed verify, lost
# audit writes) and the failures of auditing and privilege changes that are only warnings.
DEFAULT_ALERT_ACTIONS = ("critical", "forwarding.stalled", "recording.failed", "storage.low", "audit.review_overdue",
                         "user.role_changed")


def _words(name, default):
    """Read a comma-separated list of words (lower case, no blanks, order kept, duplicates dropped)."""
    raw = _str(name)
    if raw is None:
        return tuple(default)
    words = [word.strip().lower() for word in raw.split(",") if word.strip()]
    for word in words:
        if not re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", word):
            raise ConfigError(f"{name}={raw!r}: {word!r} is not an action code such as auth.locked")
    return tuple(dict.fromkeys(words))


def _webhook_url(name):
    """Read an http(s) address with a host (path and query allowed), or None."""
    raw = _str(name)
    if raw is None:
        return None
    try:
        parts = urlsplit(raw.strip())
        parts.port
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ConfigError(f"{name}: the value is not an http:// or https:// address with a host")
    return raw.strip()  # never echoed back: a webhook address often carries a token


def _hours(name, default):
    """Read usual working hours as "HH-HH" (local to AUDIT_TIMEZONE); return (first hour, end hour)."""
    raw = _str(name, default).strip()
    match = re.fullmatch(r"(\d{1,2})(?::00)?-(\d{1,2})(?::00)?", raw)
    if not match or not 0 <= int(match[1]) < int(match[2]) <= 24:
        raise ConfigError(f"{name}={raw!r} must be hours such as 07-19 (start before end, 0 to 24)")
    return int(match[1]), int(match[2])


def _timezone(name, default):
    """Read an IANA time zone name such as Europe/Berlin."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    raw = _str(name, default).strip()
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a time zone name such as Europe/Berlin or UTC") from None
    return raw


def _public_url(name):
    """Read a public address (scheme, host, optional port, nothing else) and return its origin, or None."""
    raw = _str(name)
    return None if raw is None else public_url_origin(name, raw)


def public_url_origin(name, raw):
    """Return the origin of a public address such as https://host:8443, or fail naming the variable."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a URL such as https://gatehouse.example.org:8443") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.username is not None \
            or parts.password is not None or parts.path not in ("", "/") or parts.query or parts.fragment \
            or raw.strip().endswith(("?", "#")) or not re.fullmatch(r"[a-z0-9.-]+|[0-9a-f:.]+", parts.hostname.lower()):
        raise ConfigError(f"{name}={raw!r} must be http(s)://host[:port] with no path, such as "
                          "https://gatehouse.example.org:8443")
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    # Browsers leave a default port out of Origin, so the setting does too.
    return f"{scheme}://{host}" + ("" if port in (None, {"http": 80, "https": 443}[scheme]) else f":{port}")


def _instance_dir():
    """Return the folder for the SQLite file and the generated secret key."""
    return Path(_str("GATEHOUSE_INSTANCE", str(BASE_DIR / "instance"))).resolve()


def _database_url(instance):
    """Return the SQLAlchemy URL; postgresql:// is mapped to the psycopg 3 driver."""
    url = _str("DATABASE_URL", f"sqlite:///{instance / 'gatehouse.db'}")
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def load_secret_key(instance):
    """Return SECRET_KEY from the environment, or one generated once and kept in instance/ (0600)."""
    configured = _str("SECRET_KEY")
    if configured:
        if len(configured) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters (it also derives the encryption key)")
        return configured
    path = instance / "secret_key"
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


class Config:
    """Every setting, its default and why; see the README for the table."""

    def __init__(self):
        instance = _instance_dir()
        self.INSTANCE_DIR = str(instance)
        # Signs sessions and derives the at-rest encryption key unless ENCRYPTION_KEY is set.
        self.SECRET_KEY = None  # filled lazily by create_app so tests can override without touching disk
        self.ENCRYPTION_KEY = _str("ENCRYPTION_KEY")
        self.SQLALCHEMY_DATABASE_URI = _database_url(instance)
        # First admin, created when the user table is empty; no password means one is generated.
        self.ADMIN_USER = _str("ADMIN_USER", "admin")
        self.ADMIN_PASSWORD = _str("ADMIN_PASSWORD")
        self.PASSWORD_MIN_LENGTH = _int("PASSWORD_MIN_LENGTH", 12, 8, 1024)
        # delay: an account's failures earn a growing wait (nobody can lock the real user out); lock: PCI DSS 8.3.4.
        self.LOCKOUT_MODE = _choice("LOCKOUT_MODE", "delay", ("delay", "lock"))
        # Failed log-ins in a row before an account waits (delay) or is locked (lock), and how long a lock lasts.
        self.LOGIN_MAX_FAILURES = _int("LOGIN_MAX_FAILURES", 5, 1, 1000)
        self.LOGIN_LOCK_MINUTES = _int("LOGIN_LOCK_MINUTES", 30 if self.LOCKOUT_MODE == "lock" else 15, 1, 24 * 60)
        if self.LOCKOUT_MODE == "lock" and (self.LOGIN_MAX_FAILURES > 10 or self.LOGIN_LOCK_MINUTES < 30):
            raise ConfigError(f"LOCKOUT_MODE=lock (PCI DSS 8.3.4) needs LOGIN_MAX_FAILURES at most 10 (it is "
                              f"{self.LOGIN_MAX_FAILURES}) and LOGIN_LOCK_MINUTES at least 30 "
                              f"(it is {self.LOGIN_LOCK_MINUTES})")
        # Failures from one address (an IPv6 /64) within the window before it is refused for the block time; 0: off.
        self.LOGIN_MAX_FAILURES_PER_IP = _int("LOGIN_MAX_FAILURES_PER_IP", 20, 0, 100000)
        self.LOGIN_IP_WINDOW_MINUTES = _int("LOGIN_IP_WINDOW_MINUTES", 15, 1, 24 * 60)
        self.LOGIN_IP_BLOCK_MINUTES = _int("LOGIN_IP_BLOCK_MINUTES", 15, 1, 7 * 24 * 60)
        self.SESSION_TTL_HOURS = _int("SESSION_TTL_HOURS", 8, 1, 24 * 30)
        # A log-in without activity for this long ends (PCI DSS 8.2.8 asks 15); 0: no idle limit. Tests use seconds.
        self.SESSION_IDLE_MINUTES = _int("SESSION_IDLE_MINUTES", 15, 0, 24 * 60)
        self.SESSION_IDLE_SECONDS = _int("SESSION_IDLE_SECONDS", self.SESSION_IDLE_MINUTES * 60, 0, 24 * 3600)
        # Single sign-on with an OpenID Connect provider (discovery from the issuer); unset: local log-in only.
        self.OIDC_ISSUER = _str("OIDC_ISSUER")
        self.OIDC_CLIENT_ID = _str("OIDC_CLIENT_ID")
        self.OIDC_CLIENT_SECRET = _str("OIDC_CLIENT_SECRET")
        if self.OIDC_ISSUER and not self.OIDC_CLIENT_ID:
            raise ConfigError("OIDC_CLIENT_ID must be set when OIDC_ISSUER is")
        self.OIDC_DISPLAY_NAME = _str("OIDC_DISPLAY_NAME", "single sign-on")
        self.OIDC_SCOPES = _str("OIDC_SCOPES", "openid profile email")
        # First log-in of an unknown person creates their user (role from the groups claim); off: an admin links them.
        self.OIDC_AUTO_CREATE = _choice("OIDC_AUTO_CREATE", "off", ("on", "off"))
        self.OIDC_USERNAME_CLAIM = _str("OIDC_USERNAME_CLAIM", "preferred_username")
        self.OIDC_GROUPS_CLAIM = _str("OIDC_GROUPS_CLAIM", "groups")
        self.OIDC_ADMIN_GROUP = _str("OIDC_ADMIN_GROUP")
        # off hides the password form (single sign-on only); `flask users` keeps an emergency way in.
        self.LOCAL_LOGIN = _choice("LOCAL_LOGIN", "on", ("on", "off"))
        # Who needs a second factor (TOTP) at a local log-in: admins, all, or off.
        self.REQUIRE_2FA = _choice("REQUIRE_2FA", "admins", ("admins", "all", "off"))
        # Reverse proxies in front of the app; 0 ignores X-Forwarded-For entirely.
        self.TRUSTED_PROXY_HOPS = _int("TRUSTED_PROXY_HOPS", 0, 0, 10)
        # The address people type (scheme://host[:port]); terminals accept only this Origin. Unset: from the request.
        self.PUBLIC_URL = _public_url("PUBLIC_URL")
        self.AUDIT_RETENTION_DAYS = _int("AUDIT_RETENTION_DAYS", 7, 1, 36500)
        self.AUDIT_PRUNE_INTERVAL_SECONDS = _int("AUDIT_PRUNE_INTERVAL_SECONDS", 3600, 10, 7 * 86400)
        # An open audit viewer asks for new rows this often; tests shorten it.
        self.AUDIT_POLL_SECONDS = _int("AUDIT_POLL_SECONDS", 5, 1, 3600)
        # Expired audit rows are appended here (gzip JSON Lines, one file a day) before deletion.
        self.AUDIT_ARCHIVE_DIR = _str("AUDIT_ARCHIVE_DIR")
        # A running server walks the chain and its checkpoints this often (one process a day by default); 0: never.
        self.AUDIT_VERIFY_SECONDS = _int("AUDIT_VERIFY_SECONDS", 86400, 0, 30 * 86400)
        # Signs checkpoints of the chain head; kept outside the database. Unset: INSTANCE_DIR/audit_signing_key.
        self.AUDIT_SIGNING_KEY = _str("AUDIT_SIGNING_KEY")
        # How often the head is signed (only if it moved); a rewind past a checkpoint is then found.
        self.AUDIT_CHECKPOINT_SECONDS = _int("AUDIT_CHECKPOINT_SECONDS", 300, 1, 86400)
        # Every checkpoint is also appended here, so the newest outlives rows deleted from the database.
        # Unset: INSTANCE_DIR/audit_checkpoints.jsonl.
        self.AUDIT_CHECKPOINT_FILE = _str("AUDIT_CHECKPOINT_FILE")
        # Every event is also sent to these syslog servers (RFC 5424); unset: nothing is queued, no cost.
        self.SYSLOG_TARGETS = _syslog_targets("SYSLOG_TARGETS")
        # CA bundle that tls:// targets are verified against; unset: the system's trusted CAs.
        self.SYSLOG_CA_FILE = _str("SYSLOG_CA_FILE")
        # authpriv keeps security messages out of world-readable logs on most receivers.
        self.SYSLOG_FACILITY = _choice("SYSLOG_FACILITY", "authpriv", tuple(SYSLOG_FACILITIES))
        # The oldest undelivered event older than this records forwarding.stalled (once, until it drains).
        self.SYSLOG_STALL_SECONDS = _int("SYSLOG_STALL_SECONDS", 300, 10, 7 * 86400)
        # Chosen events are POSTed as JSON to this address, signed with HMAC-SHA256 of ALERT_WEBHOOK_SECRET.
        self.ALERT_WEBHOOK_URL = _webhook_url("ALERT_WEBHOOK_URL")
        self.ALERT_WEBHOOK_SECRET = _str("ALERT_WEBHOOK_SECRET")
        if self.ALERT_WEBHOOK_URL and len(self.ALERT_WEBHOOK_SECRET or "") < 16:
            raise ConfigError("ALERT_WEBHOOK_SECRET must be set (16 characters or more) when ALERT_WEBHOOK_URL is")
        # Action codes that alert; "critical" means every critical event, "warning" every warning and above.
        self.ALERT_ACTIONS = _words("ALERT_ACTIONS", DEFAULT_ALERT_ACTIONS)
        # A period of the trail left unreviewed longer than this records audit.review_overdue (an alert).
        self.AUDIT_REVIEW_DAYS = _int("AUDIT_REVIEW_DAYS", 2, 1, 365)
        # The review page flags sessions started outside these hours or on a weekend, in this time zone.
        self.AUDIT_USUAL_HOURS = _hours("AUDIT_USUAL_HOURS", "07-19")
        self.AUDIT_TIMEZONE = _timezone("AUDIT_TIMEZONE", "UTC")
        # Less free space than this share on the database's, recordings' or archive's disk records storage.low.
        self.STORAGE_WARN_FREE_PERCENT = _int("STORAGE_WARN_FREE_PERCENT", 10, 0, 90)
        self.STORAGE_CHECK_SECONDS = _int("STORAGE_CHECK_SECONDS", 60, 1, 86400)
        # Every terminal is recorded (asciicast, encrypted) unless RECORDING=off; past the cap a recording stops.
        self.RECORDING = _choice("RECORDING", "on", ("on", "off"))
        self.RECORDINGS_DIR = _str("RECORDINGS_DIR", str(instance / "recordings"))
        self.RECORDING_MAX_MB = _int("RECORDING_MAX_MB", 100, 1, 1024 * 1024)
        # Recordings and their commands go with the events that seal them, never before.
        self.RECORDING_RETENTION_DAYS = _int("RECORDING_RETENTION_DAYS", self.AUDIT_RETENTION_DAYS, 1, 36500)
        self.SSH_CONNECT_TIMEOUT = _int("SSH_CONNECT_TIMEOUT", 10, 1, 300)
        # The device list shows whether each device's port answers, checked this often in the background (0: never).
        self.PORT_CHECK_SECONDS = _int("PORT_CHECK_SECONDS", 300, 0, 86400)
        self.SSH_KEEPALIVE_SECONDS = _int("SSH_KEEPALIVE_SECONDS", 15, 1, 3600)
        # A device that takes no input for this long while input waits ends the session (remote_stuck).
        self.SSH_WRITE_TIMEOUT = _int("SSH_WRITE_TIMEOUT", 30, 1, 3600)
        # Open terminal sessions refresh a heartbeat this often; three missed beats make an orphan.
        self.SESSION_HEARTBEAT_SECONDS = _int("SESSION_HEARTBEAT_SECONDS", 10, 1, 3600)
        self.WS_PING_SECONDS = _int("WS_PING_SECONDS", 10, 1, 3600)
        # Largest websocket message accepted from a browser (a paste is one message).
        self.WS_MAX_MESSAGE_BYTES = _int("WS_MAX_MESSAGE_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024)
        level = _str("LOG_LEVEL", "INFO")
        if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL={level!r} must be DEBUG, INFO, WARNING or ERROR")
        self.LOG_LEVEL = level.upper()

        # A request holds at most one connection, briefly (app.blocking releases idle ones), so this pool serves a
        # gevent worker's hundreds of requests (30 per worker fits PostgreSQL's 100 for a few workers); a short
        # timeout answers quickly instead of stalling the worker.
        self.SQLALCHEMY_ENGINE_OPTIONS = dict(pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=10)
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_NAME = "gatehouse_session"
        # The log-in's row holds its lifetime; re-signing the cookie on each request would only add bytes.
        self.SESSION_REFRESH_EACH_REQUEST = False
        self.WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the log-in session
        self.MAX_CONTENT_LENGTH = 1024 * 1024  # forms and key uploads; keys are small
