"""User accounts."""
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from app.blocking import run_blocking
from app.dbtypes import UTCDateTime, now_utc
from app.extensions import db

# Hash a throw-away password once, so an unknown user costs as much as a wrong password.
_DUMMY_HASH = generate_password_hash("gatehouse-timing-equaliser")


class User(UserMixin, db.Model):
    """A person who logs in to Gatehouse."""

    __tablename__ = "users"
    # Ids are never reused (SQLite would hand a deleted user's id to the next one).
    __table_args__ = (UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_users_oidc_identity"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    # Bumped when the second factor is reset or turned off: a pending log-in (totp.py) of an older epoch is void.
    session_epoch: Mapped[int] = mapped_column(default=0)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Single sign-on: the provider's issuer and subject identify the person (a username may change there).
    oidc_issuer: Mapped[str | None] = mapped_column(String(300))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    # Second factor: the TOTP secret (encrypted like device secrets), when it was confirmed, and the last time
    # step accepted (a code is good once).
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # An admin chose the current password (created or reset with one): until the user picks their own, every
    # page leads to the change form.
    must_change_password: Mapped[bool] = mapped_column(default=False)

    def set_password(self, password):
        """Hash and store a new password (in the thread pool: hashing is CPU-heavy)."""
        self.password_hash = run_blocking(generate_password_hash, password)
        self.password_changed_at = now_utc()

    def check_password(self, password):
        """Say whether password matches, without stalling the event loop."""
        return run_blocking(check_password_hash, self.password_hash, password)

    @staticmethod
    def burn_password_check(password):
        """Spend the time of one password check, for a username that does not exist."""
        run_blocking(check_password_hash, _DUMMY_HASH, password)

    # Identity, not Flask-Login's get_id() equality: two users are the same only if they are one row.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def get_id(self):
        """Return the token of this request's log-in: the only thing the cookie carries."""
        return getattr(self, "login_token", None)

    @property
    def is_active(self):
        return not self.disabled


class LoginSession(db.Model):
    """One log-in: a browser that logged in, until it logs out, is revoked or expires.

    The cookie carries a random token; the row is keyed by its SHA-256, so neither a database
    reader nor the audit trail ever holds a value that opens a log-in.
    """

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(16), default="password")
    source_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    # The last request or terminal input of its user (background polls do not count): the idle limit runs from here.
    active_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc, index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoke_reason: Mapped[str | None] = mapped_column(String(32))
    revoked_by: Mapped[str | None] = mapped_column(String(64))

    @property
    def handle(self):
        """Return the short public name of this log-in, as shown in lists and the trail."""
        return self.id[:12]


class LoginThrottle(db.Model):
    """Failed log-ins counted for one source address (kind "ip") or one typed account name (kind "account").

    Rows exist for unknown names too, so a refusal never tells whether an account exists. blocked_at marks a
    block (or an account's delay) that is still to be reported as lifted; refused counts the attempts turned
    away meanwhile, which are not written to the trail one by one.
    """

    __tablename__ = "login_throttle"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    key: Mapped[str] = mapped_column(String(80), primary_key=True)  # an address, an IPv6 /64, or a lower-case name
    failures: Mapped[int] = mapped_column(default=0)  # within the window that started at window_started_at
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    refused: Mapped[int] = mapped_column(default=0)
    # A name's attempts are checked one at a time: the one being checked holds this until its outcome is counted.
    checking_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RecoveryCode(db.Model):
    """One of a user's one-time recovery codes for the second factor, kept only as a hash."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OidcUsedState(db.Model):
    """The state of a single sign-on callback that was answered once, kept until its flow would have expired.

    The flow's state lives in the browser's cookie; a copy of that cookie from before the callback would carry it
    again. This row makes Gatehouse itself refuse the second use. Only the SHA-256 of the state is kept.
    """

    __tablename__ = "oidc_used_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
