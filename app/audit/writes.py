"""The statements of one append to the chain, built once: record()'s hot path builds no statement.

On PostgreSQL the event, its outbox rows and the head's new hash are one statement (data-modifying CTEs), sent with
the COMMIT in one round trip (psycopg's pipeline mode): the head row's lock, taken by NEXT_LINK, is held for that
round trip and the commit's WAL flush, whatever forwarding is on. SQLite, in the process, runs the writes one by one.
"""
from sqlalchemy import String, bindparam, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from app.audit.models import AuditChainHead, AuditEvent, AuditOutbox

_EVENTS, _HEAD, _OUTBOX = AuditEvent.__table__, AuditChainHead.__table__, AuditOutbox.__table__

# The first statement of an append: it takes the head row's lock on PostgreSQL and the database write lock on
# SQLite, so no two writers ever read the same head.
NEXT_LINK = (update(_HEAD).where(_HEAD.c.id == 1).values(last_id=_HEAD.c.last_id + 1)
             .returning(_HEAD.c.last_id, _HEAD.c.last_hash))

# Bound names are the row's keys with a prefix: a bound name may not be a column's name in an INSERT or UPDATE.
_INSERT_EVENT = insert(_EVENTS).values({name: bindparam(f"e_{name}", type_=column.type)
                                        for name, column in _EVENTS.c.items()})
_SET_HASH = update(_HEAD).where(_HEAD.c.id == 1).values(last_hash=bindparam("e_hash"))
_INSERT_OUTBOX = insert(_OUTBOX).values(target=bindparam("o_target"), event_id=bindparam("e_id"),
                                        queued_at=bindparam("e_occurred_at", type_=_OUTBOX.c.queued_at.type))


def _one_statement(with_outbox):
    """Return the PostgreSQL statement that writes the event (and its outbox rows) and moves the head's hash."""
    statement = _SET_HASH.add_cte(_INSERT_EVENT.cte("event"))
    if not with_outbox:
        return statement
    targets = select(func.unnest(bindparam("o_targets", type_=ARRAY(String))), bindparam("e_id"),
                     bindparam("e_occurred_at", type_=_OUTBOX.c.queued_at.type), literal(0))
    # attempts given here: a Python-side default is filled in for the outer statement only, never in a CTE.
    queued = insert(_OUTBOX).from_select(["target", "event_id", "queued_at", "attempts"], targets)
    return statement.add_cte(queued.cte("queued"))


_ONE_STATEMENT = {False: _one_statement(False), True: _one_statement(True)}


def commit_link(conn, row, targets):
    """Write row (id and hashes set) at the head of the chain, queued for each outbox target, and commit."""
    params = {f"e_{name}": value for name, value in row.items()}
    if conn.dialect.name == "postgresql":
        # Pipelined: the statement and the COMMIT go in one round trip, and the head's lock is held that much less.
        try:
            with conn.connection.driver_connection.pipeline():
                conn.execute(_ONE_STATEMENT[bool(targets)], {**params, "o_targets": list(targets)})
                conn.commit()
        except Exception:
            conn.invalidate()  # a failed pipeline skips its COMMIT and leaves a transaction in error: not for reuse
            raise
        return
    conn.execute(_INSERT_EVENT, params)
    conn.execute(_SET_HASH, params)
    if targets:
        conn.execute(_INSERT_OUTBOX, [{**params, "o_target": target} for target in targets])
    conn.commit()
