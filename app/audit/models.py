"""The audit trail: one append-only table and the head of its hash chain."""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.dbtypes import UTCDateTime
from app.extensions import db

GENESIS_HASH = "0" * 64
# The outbox target of the alert webhook; its address stays in the settings (it often carries a token).
ALERT_TARGET = "alert:webhook"


class AuditEvent(db.Model):
    """One security-relevant thing that happened; written only by app.audit.events.record()."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor_id", "actor", "id"),
        Index("ix_audit_events_action_id", "action", "id"),
        Index("ix_audit_events_source_ip_id", "source_ip", "id"),
        Index("ix_audit_events_user_id_id", "user_id", "id"),
        Index("ix_audit_events_outcome_id", "outcome", "id"),
    )

    # Assigned under the chain lock, so ids are gap-free and follow the chain order.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True,
                                    autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    # No foreign key on purpose: deleting a user must not rewrite (and so break) hashed history.
    user_id: Mapped[int | None]
    action: Mapped[str] = mapped_column(String(48))
    outcome: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    request_id: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(400))
    session_id: Mapped[str | None] = mapped_column(String(36), index=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(db.Model):
    """The single row that every writer locks to append to the chain in order."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), default=GENESIS_HASH)


class AuditOutbox(db.Model):
    """One event still to be delivered to one syslog target or the alert webhook; deleted once it took it."""

    __tablename__ = "audit_outbox"

    # One row per (target, event): each target keeps its own progress, so a dead one holds back no other.
    target: Mapped[str] = mapped_column(String(300), primary_key=True)
    event_id: Mapped[int] = mapped_column(BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True,
                                          autoincrement=False)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Retries with back-off (the alert webhook): how many tries failed, when to try next, and why the last failed.
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(200))
