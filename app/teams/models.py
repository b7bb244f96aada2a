"""Teams of users, and the grants that let a team use the devices of a folder or a tag owned by chosen owners."""
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint, false as sa_false
from sqlalchemy.orm import Mapped, mapped_column

from app.dbtypes import UTCDateTime, now_utc
from app.extensions import db

GRANT_FOLDER = "folder"
GRANT_TAG = "tag"


class Team(db.Model):
    """A named group of users."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)


class TeamMember(db.Model):
    """One user in one team."""

    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class Grant(db.Model):
    """A team may use the devices in a folder, or with a tag, of the grant's owners (and of admins); credentials
    stay hidden."""

    __tablename__ = "access_grants"
    __table_args__ = (UniqueConstraint("team_id", "kind", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # GRANT_FOLDER or GRANT_TAG
    value: Mapped[str] = mapped_column(String(64))
    # Members may also read the trail of sessions on these devices (by default they see only their own events).
    shares_trail: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    created_by: Mapped[str | None] = mapped_column(String(64))


class GrantOwner(db.Model):
    """One user whose devices a grant covers: a folder or tag name alone proves nothing, since any owner may set it."""

    __tablename__ = "grant_owners"

    grant_id: Mapped[int] = mapped_column(ForeignKey("access_grants.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
