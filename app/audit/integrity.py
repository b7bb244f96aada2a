"""Walk the hash chain and name the first row that breaks it."""
from dataclasses import dataclass

from sqlalchemy import select

from app.extensions import db

from .events import chain_hash
from .models import GENESIS_HASH, AuditChainHead, AuditEvent

_COLUMNS = [c for c in AuditEvent.__table__.columns]


@dataclass
class Verdict:
    """What verify() found: ok, how many rows, the head, or the first bad row and why."""

    ok: bool
    count: int
    head_id: int | None
    head_hash: str | None
    bad_id: int | None = None
    problem: str | None = None

    def __str__(self):
        if self.ok:
            return f"OK: {self.count} events, head id {self.head_id}, head hash {self.head_hash}"
        return f"BROKEN at event id {self.bad_id}: {self.problem} ({self.count} events checked before it)"


def prune_anchors():
    """Return {anchor_id: anchor_hash} of the prunes recorded in the remaining trail."""
    rows = db.session.execute(select(AuditEvent.details).where(AuditEvent.action == "audit.pruned")).scalars()
    return {d["anchor_id"]: d["anchor_hash"] for d in rows if d and "anchor_id" in d}


def verify(batch_size=5000):
    """Check every row's hash, its link to the row before, gap-free ids, and the chain head."""
    anchors = prune_anchors()
    previous = None
    count = 0
    last_id = 0
    while True:
        rows = db.session.execute(
            select(*_COLUMNS).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch_size)
        ).mappings().all()
        if not rows:
            break
        for row in rows:
            if previous is None:
                if row["id"] == 1:
                    expected = GENESIS_HASH
                elif anchors.get(row["id"] - 1) == row["prev_hash"]:
                    expected = row["prev_hash"]
                else:
                    return Verdict(False, count, None, None, row["id"],
                                   "the oldest row does not follow a recorded prune: earlier rows were deleted "
                                   "(or a prune was interrupted: run `flask audit prune` again)")
            else:
                expected = previous["hash"]
                if row["id"] != previous["id"] + 1:
                    return Verdict(False, count, None, None, row["id"],
                                   f"rows {previous['id'] + 1}..{row['id'] - 1} are missing")
            if row["prev_hash"] != expected:
                return Verdict(False, count, None, None, row["id"], "does not link to the row before it")
            if chain_hash(row["prev_hash"], row) != row["hash"]:
                return Verdict(False, count, None, None, row["id"], "its content was altered")
            previous = row
            count += 1
        last_id = rows[-1]["id"]
        db.session.expunge_all()
    head = db.session.get(AuditChainHead, 1)
    head_id, head_hash = (previous["id"], previous["hash"]) if previous else (0, GENESIS_HASH)
    if head is None or head.last_id != head_id or head.last_hash != head_hash:
        return Verdict(False, count, None, None, head_id + 1,
                       "the newest rows were deleted (the chain head points past the last row)")
    return Verdict(True, count, head_id if previous else None, head_hash)
