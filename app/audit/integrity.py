"""Walk the hash chain and name the first row that breaks it."""
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, type_coerce
from sqlalchemy.types import NullType

from app.extensions import db

from .events import chain_hash
from .models import GENESIS_HASH, AuditChainHead, AuditEvent

# Time and details come raw, decoded here, so a row the database cannot turn into a date or JSON is named,
# not a traceback.
_RAW = ("occurred_at", "details")
_COLUMNS = [type_coerce(c, NullType()).label(c.name) if c.name in _RAW else c for c in AuditEvent.__table__.columns]


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


class _Broken(Exception):
    """The walk found a row that breaks the chain."""

    def __init__(self, bad_id, problem):
        super().__init__(problem)
        self.bad_id, self.problem = bad_id, problem


@contextmanager
def snapshot():
    """Yield a connection whose reads all see the database as it was at the first one."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        elif conn.dialect.name == "sqlite":
            # pysqlite starts no transaction for reads, so each SELECT would see a newer state (WAL).
            conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.rollback()


def _details(row_id, raw):
    """Return a row's details as record() wrote them, or raise _Broken."""
    if not isinstance(raw, (str, bytes)):
        return raw  # PostgreSQL's driver decodes JSON itself
    try:
        return json.loads(raw)
    except ValueError:
        raise _Broken(row_id, "its details are not valid JSON") from None


def _time(row_id, raw):
    """Return a row's time as an aware UTC datetime, or raise _Broken."""
    if isinstance(raw, str):
        try:
            raw = datetime.fromisoformat(raw)
        except ValueError:
            raise _Broken(row_id, f"its time {raw[:40]!r} is not a date") from None
    if not isinstance(raw, datetime):
        raise _Broken(row_id, "its time is not a date")
    return raw.replace(tzinfo=timezone.utc) if raw.tzinfo is None else raw


def _decoded(row):
    """Return the row with its time and details decoded, or raise _Broken."""
    return {**row, "details": _details(row["id"], row["details"]), "occurred_at": _time(row["id"], row["occurred_at"])}


def prune_anchors(conn):
    """Return {anchor_id: anchor_hash} of the successful prunes recorded in the remaining trail."""
    rows = conn.execute(select(AuditEvent.id, type_coerce(AuditEvent.details, NullType()).label("details"))
                        .where(AuditEvent.action == "audit.pruned", AuditEvent.outcome == "success"))
    anchors = {}
    for row in rows:
        try:
            details = _details(row.id, row.details)
        except _Broken:
            continue  # the walk names this row when it reaches it
        if isinstance(details, dict) and "anchor_id" in details:
            anchors[details["anchor_id"]] = details.get("anchor_hash")
    return anchors


def _rows(conn, batch_size, upto):
    """Yield the rows in chain order, decoded, batch by batch."""
    last_id = 0
    while True:
        query = select(*_COLUMNS).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch_size)
        if upto is not None:
            query = query.where(AuditEvent.id <= upto)
        rows = conn.execute(query).mappings().all()
        if not rows:
            return
        for row in rows:
            yield _decoded(row)
        last_id = rows[-1]["id"]


def _expected_prev(row, previous, anchors):
    """Return the prev_hash the row must carry, or raise _Broken for a gap or an unanchored start."""
    if previous is not None:
        if row["id"] != previous["id"] + 1:
            raise _Broken(row["id"], f"rows {previous['id'] + 1}..{row['id'] - 1} are missing")
        return previous["hash"]
    if row["id"] == 1:
        return GENESIS_HASH
    if anchors.get(row["id"] - 1) == row["prev_hash"]:
        return row["prev_hash"]
    raise _Broken(row["id"], "the oldest row does not follow a recorded prune: earlier rows were deleted "
                             "(or a prune was interrupted: run `flask audit prune` again)")


def verify(batch_size=5000, upto=None):
    """Check every row's hash, its link to the row before, gap-free ids, and the chain head, in one snapshot.

    With upto, check the rows up to that id only (the head is then not compared).
    """
    with snapshot() as conn:
        anchors = prune_anchors(conn)
        previous, count = None, 0
        try:
            for row in _rows(conn, batch_size, upto):
                if row["prev_hash"] != _expected_prev(row, previous, anchors):
                    raise _Broken(row["id"], "does not link to the row before it")
                if chain_hash(row["prev_hash"], row) != row["hash"]:
                    raise _Broken(row["id"], "its content was altered")
                previous, count = row, count + 1
        except _Broken as broken:
            return Verdict(False, count, None, None, broken.bad_id, broken.problem)
        head_id, head_hash = (previous["id"], previous["hash"]) if previous else (0, GENESIS_HASH)
        if upto is None:
            head = conn.execute(select(AuditChainHead.last_id, AuditChainHead.last_hash)
                                .where(AuditChainHead.id == 1)).first()
            if head is None or head.last_id != head_id or head.last_hash != head_hash:
                return Verdict(False, count, None, None, head_id + 1,
                               "the newest rows were deleted (the chain head points past the last row)")
    return Verdict(True, count, head_id if previous else None, head_hash)
