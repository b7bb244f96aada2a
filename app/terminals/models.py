"""Terminal sessions and the commands typed in them."""
from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text, false as sa_false
from sqlalchemy.orm import Mapped, mapped_column

from app.dbtypes import UTCDateTime, now_utc
from app.extensions import db


class TerminalSession(db.Model):
    """One terminal, open or ended; the heartbeat tells a live one from an orphan."""

    __tablename__ = "terminal_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(400))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str] = mapped_column(String(128))  # host:pid of the process that holds it
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    # The log-in that opened it: when that log-in ends, so does the terminal.
    login_session_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Set to end it from anywhere (an admin, a log-in that ended); its holder closes it within a second.
    terminate_requested: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    terminate_reason: Mapped[str | None] = mapped_column(String(32))
    # Set while no browser is attached: the SSH session is kept TERMINAL_RESUME_SECONDS for its owner to resume.
    detached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)  # browser -> device
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)  # device -> browser


class SessionCommand(db.Model):
    """A command line as the screen showed it when Enter was pressed; its marker is in the sealed recording."""

    __tablename__ = "session_commands"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("terminal_sessions.id", ondelete="CASCADE"), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    offset_s: Mapped[float] = mapped_column(Float)  # seconds from the start of the recording: where the player seeks
    text: Mapped[str] = mapped_column(Text)
