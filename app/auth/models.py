"""User accounts."""
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import String
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

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    # Bumped on password change; a login session carrying an older epoch is no longer valid.
    session_epoch: Mapped[int] = mapped_column(default=0)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

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

    def get_id(self):
        """Return the login-session id: user id and epoch, so a password change ends old sessions."""
        return f"{self.id}:{self.session_epoch}"

    @property
    def is_active(self):
        return not self.disabled
