"""SSH targets and their credentials (encrypted at rest)."""
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.dbtypes import UTCDateTime, now_utc
from app.extensions import db

AUTH_PASSWORD = "password"
AUTH_KEY = "key"


class Device(db.Model):
    """An SSH target that belongs to one user."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=22)
    username: Mapped[str] = mapped_column(String(64))
    auth_type: Mapped[str] = mapped_column(String(16), default=AUTH_PASSWORD)
    # AES-256-GCM ciphertexts (app.devices.secrets); never rendered, never returned.
    password_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    private_key_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    passphrase_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The public half of the key, safe to show so it can be copied into authorized_keys.
    public_key: Mapped[str | None] = mapped_column(Text)
    key_type: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc, onupdate=now_utc)

    @property
    def address(self):
        """Return host:port, with an IPv6 address in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def label(self):
        """Return the audit label of the device: name (host:port)."""
        return f"{self.name} ({self.address})"
