"""SSH targets, their credentials (encrypted at rest) and the host keys they offered."""
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint, true as sa_true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.dbtypes import UTCDateTime, now_utc
from app.extensions import db

AUTH_PASSWORD = "password"
AUTH_KEY = "key"


class Device(db.Model):
    """An SSH target that belongs to one user (its owner); teams may be granted its use by folder or tag."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(default=22)
    username: Mapped[str] = mapped_column(String(64))
    auth_type: Mapped[str] = mapped_column(String(16), default=AUTH_PASSWORD)
    # AES-256-GCM ciphertexts (app.crypto); never rendered, never returned.
    password_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    private_key_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    passphrase_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The public half of the key, safe to show so it can be copied into authorized_keys.
    public_key: Mapped[str | None] = mapped_column(Text)
    key_type: Mapped[str | None] = mapped_column(String(32))
    # One folder (a collapsible group in the list, and a unit of access grants) and any number of tags.
    folder: Mapped[str | None] = mapped_column(String(64), index=True)
    tag_rows: Mapped[list["DeviceTag"]] = relationship(cascade="all, delete-orphan", lazy="selectin",
                                                       order_by="DeviceTag.tag")
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the last terminal opened to it
    # Whether its port took a TCP connection at the last background check (None: not checked).
    port_open: Mapped[bool | None]
    port_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # SFTP next to the terminal (the file manager); only an admin may change it.
    allow_file_transfer: Mapped[bool] = mapped_column(default=True, server_default=sa_true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc, onupdate=now_utc)

    @property
    def tags(self):
        """Return the device's tags, sorted."""
        return [row.tag for row in self.tag_rows]

    @tags.setter
    def tags(self, names):
        """Replace the device's tags."""
        keep = {row.tag: row for row in self.tag_rows}
        self.tag_rows = [keep.get(name) or DeviceTag(tag=name) for name in sorted(set(names))]

    @property
    def address(self):
        """Return host:port, with an IPv6 address in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def label(self):
        """Return the audit label of the device: name (host:port)."""
        return f"{self.name} ({self.address})"


class DeviceTag(db.Model):
    """One tag on one device."""

    __tablename__ = "device_tags"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


class Favourite(db.Model):
    """A device a user pinned to the top of their list."""

    __tablename__ = "device_favourites"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)


class HostKey(db.Model):
    """A host key trusted on first use for one host:port."""

    __tablename__ = "host_keys"
    __table_args__ = (UniqueConstraint("host", "port"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int]
    key_type: Mapped[str] = mapped_column(String(64))
    key_base64: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))  # "SHA256:..." as OpenSSH prints it
    trusted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    trusted_by: Mapped[str | None] = mapped_column(String(64))


class OfferedHostKey(db.Model):
    """A key a device offered that did not match its stored one, kept so an admin can accept exactly it."""

    __tablename__ = "offered_host_keys"
    __table_args__ = (UniqueConstraint("host", "port", "fingerprint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int]
    key_type: Mapped[str] = mapped_column(String(64))
    key_base64: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    offered_to: Mapped[str | None] = mapped_column(String(64))  # who tried to connect
