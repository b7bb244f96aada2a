"""Run CPU-heavy calls off the event loop that every terminal on a gevent worker shares."""
import sys

from flask import has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

_WROTE = "gatehouse_wrote"


@event.listens_for(Session, "do_orm_execute")
def _note_write(state):
    """Remember that the transaction ran a statement that is not a plain read."""
    if not state.is_select:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_flush")
def _note_flush(session, _context):
    """Remember that the transaction holds flushed, uncommitted changes."""
    session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _forget_writes(session, transaction):
    """A finished outer transaction leaves nothing unwritten behind."""
    if transaction.parent is None:
        session.info.pop(_WROTE, None)


def release_idle_connection():
    """Give the request session's connection back to the pool when its transaction changed nothing."""
    if not has_app_context():
        return
    from app.extensions import db

    if not db.session.registry.has():
        return
    session = db.session()
    transaction = session.get_transaction()
    if transaction is None or not transaction.is_active or session.in_nested_transaction():
        return
    if session.info.get(_WROTE):
        return
    if session.new or session.dirty or session.deleted:
        return
    # A transaction that only read loses nothing by ending; keeping loaded objects avoids reloading them,
    # and without this a request that then waits (hashing, audit write) pins a pooled connection.
    saved = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = saved


def run_blocking(func, *args, **kwargs):
    """Call func in gevent's thread pool when the process is monkey-patched, else directly."""
    release_idle_connection()
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            import gevent

            return gevent.get_hub().threadpool.apply(func, args, kwargs)
    return func(*args, **kwargs)
