"""Gatehouse settings: one class, one line per setting, read from the environment."""
import os
import secrets
from pathlib import Path

from dotenv import load_dotenv

from config_values import (ConfigError, bucket_value, choice_value, endpoint_value, hours_value, int_value, key_prefix,
                           public_url, str_value, syslog_targets, timezone_value, webhook_url, words_value)

BASE_DIR = Path(__file__).resolve().parent
load_dotenv(BASE_DIR / ".env")


# RFC 5424 facility codes a site may choose for the audit messages.
SYSLOG_FACILITIES = {"auth": 4, "authpriv": 10, "local0": 16, "local1": 17, "local2": 18, "local3": 19,
                     "local4": 20, "local5": 21, "local6": 22, "local7": 23}


# Events that alert by default: every critical one (a lockout, a host-key mismatch, a failed verify, lost
# audit writes) and the failures of auditing and privilege changes that are only warnings.
DEFAULT_ALERT_ACTIONS = ("critical", "forwarding.stalled", "recording.failed", "storage.low", "audit.review_overdue",
                         "user.role_changed")


def _instance_dir():
    """Return the folder for the SQLite file and the generated secret key."""
    return Path(str_value("GATEHOUSE_INSTANCE", str(BASE_DIR / "instance"))).resolve()


def _database_url(instance):
    """Return the SQLAlchemy URL; postgresql:// is mapped to the psycopg 3 driver."""
    url = str_value("DATABASE_URL", f"sqlite:///{instance / 'gatehouse.db'}")
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def load_secret_key(instance):
    """Return SECRET_KEY from the environment, or one generated once and kept in instance/ (0600)."""
    configured = str_value("SECRET_KEY")
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
    """Every setting, its default and why (the README has the table); overrides on top; checked as a whole once."""

    def __init__(self, overrides=None):
        instance = _instance_dir()
        self.INSTANCE_DIR = str(instance)
        # Signs sessions and derives the at-rest encryption key unless ENCRYPTION_KEY is set.
        self.SECRET_KEY = None  # filled lazily by create_app so tests can override without touching disk
        self.ENCRYPTION_KEY = str_value("ENCRYPTION_KEY")
        self.SQLALCHEMY_DATABASE_URI = _database_url(instance)
        # First admin, created when the user table is empty; no password means one is generated.
        self.ADMIN_USER = str_value("ADMIN_USER", "admin")
        self.ADMIN_PASSWORD = str_value("ADMIN_PASSWORD")
        self.PASSWORD_MIN_LENGTH = int_value("PASSWORD_MIN_LENGTH", 12, 8, 1024)
        # delay: an account's failures earn a growing wait (nobody can lock the real user out); lock: PCI DSS 8.3.4.
        self.LOCKOUT_MODE = choice_value("LOCKOUT_MODE", "delay", ("delay", "lock"))
        # Failed log-ins in a row before an account waits (delay) or is locked (lock), and how long a lock lasts.
        self.LOGIN_MAX_FAILURES = int_value("LOGIN_MAX_FAILURES", 5, 1, 1000)
        self.LOGIN_LOCK_MINUTES = int_value("LOGIN_LOCK_MINUTES", 30 if self.LOCKOUT_MODE == "lock" else 15, 1, 24 * 60)
        # Failures from one address (an IPv6 /64) within the window before it is refused for the block time; 0: off.
        self.LOGIN_MAX_FAILURES_PER_IP = int_value("LOGIN_MAX_FAILURES_PER_IP", 20, 0, 100000)
        self.LOGIN_IP_WINDOW_MINUTES = int_value("LOGIN_IP_WINDOW_MINUTES", 15, 1, 24 * 60)
        self.LOGIN_IP_BLOCK_MINUTES = int_value("LOGIN_IP_BLOCK_MINUTES", 15, 1, 7 * 24 * 60)
        self.SESSION_TTL_HOURS = int_value("SESSION_TTL_HOURS", 8, 1, 24 * 30)
        # A log-in without activity for this long ends (PCI DSS 8.2.8 asks 15); 0: no idle limit. Tests use seconds.
        self.SESSION_IDLE_MINUTES = int_value("SESSION_IDLE_MINUTES", 15, 0, 24 * 60)
        self.SESSION_IDLE_SECONDS = int_value("SESSION_IDLE_SECONDS", self.SESSION_IDLE_MINUTES * 60, 0, 24 * 3600)
        # Single sign-on with an OpenID Connect provider (discovery from the issuer); unset: local log-in only.
        self.OIDC_ISSUER = str_value("OIDC_ISSUER")
        self.OIDC_CLIENT_ID = str_value("OIDC_CLIENT_ID")
        self.OIDC_CLIENT_SECRET = str_value("OIDC_CLIENT_SECRET")
        self.OIDC_DISPLAY_NAME = str_value("OIDC_DISPLAY_NAME", "single sign-on")
        self.OIDC_SCOPES = str_value("OIDC_SCOPES", "openid profile email")
        # First log-in of an unknown person creates their user (role from the groups claim); off: an admin links them.
        self.OIDC_AUTO_CREATE = choice_value("OIDC_AUTO_CREATE", "off", ("on", "off"))
        self.OIDC_USERNAME_CLAIM = str_value("OIDC_USERNAME_CLAIM", "preferred_username")
        self.OIDC_GROUPS_CLAIM = str_value("OIDC_GROUPS_CLAIM", "groups")
        self.OIDC_ADMIN_GROUP = str_value("OIDC_ADMIN_GROUP")
        # off hides the password form (single sign-on only); `flask users` keeps an emergency way in.
        self.LOCAL_LOGIN = choice_value("LOCAL_LOGIN", "on", ("on", "off"))
        # Who needs a second factor (TOTP) at a local log-in: admins, all, or off.
        self.REQUIRE_2FA = choice_value("REQUIRE_2FA", "admins", ("admins", "all", "off"))
        # Reverse proxies in front of the app; 0 ignores X-Forwarded-For entirely.
        self.TRUSTED_PROXY_HOPS = int_value("TRUSTED_PROXY_HOPS", 0, 0, 10)
        # The address people type (scheme://host[:port]); terminals accept only this Origin. Unset: from the request.
        self.PUBLIC_URL = public_url("PUBLIC_URL")
        self.AUDIT_RETENTION_DAYS = int_value("AUDIT_RETENTION_DAYS", 7, 1, 36500)
        self.AUDIT_PRUNE_INTERVAL_SECONDS = int_value("AUDIT_PRUNE_INTERVAL_SECONDS", 3600, 10, 7 * 86400)
        # An open audit viewer asks for new rows this often; tests shorten it.
        self.AUDIT_POLL_SECONDS = int_value("AUDIT_POLL_SECONDS", 5, 1, 3600)
        # Expired audit rows are appended here (gzip JSON Lines, one file a day) before deletion.
        self.AUDIT_ARCHIVE_DIR = str_value("AUDIT_ARCHIVE_DIR")
        # A running server walks the chain and its checkpoints this often (one process a day by default); 0: never.
        self.AUDIT_VERIFY_SECONDS = int_value("AUDIT_VERIFY_SECONDS", 86400, 0, 30 * 86400)
        # Signs checkpoints of the chain head; kept outside the database. Unset: INSTANCE_DIR/audit_signing_key.
        self.AUDIT_SIGNING_KEY = str_value("AUDIT_SIGNING_KEY")
        # How often the head is signed (only if it moved); a rewind past a checkpoint is then found.
        self.AUDIT_CHECKPOINT_SECONDS = int_value("AUDIT_CHECKPOINT_SECONDS", 300, 1, 86400)
        # Every checkpoint is also appended here, so the newest outlives rows deleted from the database.
        # Unset: INSTANCE_DIR/audit_checkpoints.jsonl.
        self.AUDIT_CHECKPOINT_FILE = str_value("AUDIT_CHECKPOINT_FILE")
        # Every event is also sent to these syslog servers (RFC 5424); unset: nothing is queued, no cost.
        self.SYSLOG_TARGETS = syslog_targets("SYSLOG_TARGETS")
        # CA bundle that tls:// targets are verified against; unset: the system's trusted CAs.
        self.SYSLOG_CA_FILE = str_value("SYSLOG_CA_FILE")
        # authpriv keeps security messages out of world-readable logs on most receivers.
        self.SYSLOG_FACILITY = choice_value("SYSLOG_FACILITY", "authpriv", tuple(SYSLOG_FACILITIES))
        # The oldest undelivered event older than this records forwarding.stalled (once, until it drains).
        self.SYSLOG_STALL_SECONDS = int_value("SYSLOG_STALL_SECONDS", 300, 10, 7 * 86400)
        # Chosen events are POSTed as JSON to this address, signed with HMAC-SHA256 of ALERT_WEBHOOK_SECRET.
        self.ALERT_WEBHOOK_URL = webhook_url("ALERT_WEBHOOK_URL")
        self.ALERT_WEBHOOK_SECRET = str_value("ALERT_WEBHOOK_SECRET")
        # Action codes that alert; "critical" means every critical event, "warning" every warning and above.
        self.ALERT_ACTIONS = words_value("ALERT_ACTIONS", DEFAULT_ALERT_ACTIONS)
        # A period of the trail left unreviewed longer than this records audit.review_overdue (an alert).
        self.AUDIT_REVIEW_DAYS = int_value("AUDIT_REVIEW_DAYS", 2, 1, 365)
        # The review page flags sessions started outside these hours or on a weekend, in this time zone.
        self.AUDIT_USUAL_HOURS = hours_value("AUDIT_USUAL_HOURS", "07-19")
        self.AUDIT_TIMEZONE = timezone_value("AUDIT_TIMEZONE", "UTC")
        # Less free space than this share on the database's, recordings' or archive's disk records storage.low.
        self.STORAGE_WARN_FREE_PERCENT = int_value("STORAGE_WARN_FREE_PERCENT", 10, 0, 90)
        self.STORAGE_CHECK_SECONDS = int_value("STORAGE_CHECK_SECONDS", 60, 1, 86400)
        # Every terminal is recorded (asciicast, encrypted) unless RECORDING=off; past the cap a recording stops.
        self.RECORDING = choice_value("RECORDING", "on", ("on", "off"))
        self.RECORDINGS_DIR = str_value("RECORDINGS_DIR", str(instance / "recordings"))
        self.RECORDING_MAX_MB = int_value("RECORDING_MAX_MB", 100, 1, 1024 * 1024)
        # With a bucket, recordings go to that S3 object store instead of RECORDINGS_DIR (several nodes share it);
        # credentials come from boto3's chain (AWS_ACCESS_KEY_ID…, a profile, an instance role), never from here.
        self.RECORDINGS_S3_BUCKET = bucket_value("RECORDINGS_S3_BUCKET")
        self.RECORDINGS_S3_PREFIX = key_prefix("RECORDINGS_S3_PREFIX", "recordings/")
        self.RECORDINGS_S3_ENDPOINT = endpoint_value("RECORDINGS_S3_ENDPOINT")  # unset: AWS itself
        self.RECORDINGS_S3_REGION = str_value("RECORDINGS_S3_REGION")  # unset: boto3's (AWS_DEFAULT_REGION, profile)
        # Recordings and their commands go with the events that seal them, never before.
        self.RECORDING_RETENTION_DAYS = int_value("RECORDING_RETENTION_DAYS", self.AUDIT_RETENTION_DAYS, 1, 36500)
        self.SSH_CONNECT_TIMEOUT = int_value("SSH_CONNECT_TIMEOUT", 10, 1, 300)
        # The device list shows whether each device's port answers, checked this often in the background (0: never).
        self.PORT_CHECK_SECONDS = int_value("PORT_CHECK_SECONDS", 300, 0, 86400)
        self.SSH_KEEPALIVE_SECONDS = int_value("SSH_KEEPALIVE_SECONDS", 15, 1, 3600)
        # A device that takes no input for this long while input waits ends the session (remote_stuck).
        self.SSH_WRITE_TIMEOUT = int_value("SSH_WRITE_TIMEOUT", 30, 1, 3600)
        # Open terminal sessions refresh a heartbeat this often; three missed beats make an orphan.
        self.SESSION_HEARTBEAT_SECONDS = int_value("SESSION_HEARTBEAT_SECONDS", 10, 1, 3600)
        self.WS_PING_SECONDS = int_value("WS_PING_SECONDS", 10, 1, 3600)
        # Terminals a worker holds at most: by default its connections (gunicorn.conf.py reads the same variable) less
        # a tenth, at least 4, kept for pages, log-ins and watchers; past it a new terminal is refused (node_full).
        connections = int_value("GATEHOUSE_WORKER_CONNECTIONS", 2000, 5, 1_000_000)
        self.MAX_TERMINALS_PER_WORKER = int_value("MAX_TERMINALS_PER_WORKER", connections - max(4, connections // 10),
                                                  1, connections - 4)
        # A terminal whose browser went without a close is kept this long for its owner to resume (0: ends at once),
        # with this much of its latest output for the screen of a browser that comes back.
        self.TERMINAL_RESUME_SECONDS = int_value("TERMINAL_RESUME_SECONDS", 120, 0, 86400)
        self.TERMINAL_RESUME_BUFFER_KB = int_value("TERMINAL_RESUME_BUFFER_KB", 256, 16, 65536)
        # Largest file the file manager uploads to a device (streamed through in chunks, never held whole).
        self.SFTP_MAX_UPLOAD_MB = int_value("SFTP_MAX_UPLOAD_MB", 512, 1, 1024 * 1024)
        # /metrics answers a scraper that sends this as its bearer token; unset, /metrics is not served.
        self.METRICS_TOKEN = str_value("METRICS_TOKEN")
        # Largest websocket message accepted from a browser (a paste is one message).
        self.WS_MAX_MESSAGE_BYTES = int_value("WS_MAX_MESSAGE_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024)
        level = str_value("LOG_LEVEL", "INFO")
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
        vars(self).update(overrides or {})  # create_app(config=...): tests and tools set what they need
        from app.settings import validate  # here, not at the top: the app imports this module
        validate(vars(self))

