"""Run CPU-heavy calls off the event loop that every terminal on a gevent worker shares.

run_blocking() waits for the call (the caller's greenlet yields meanwhile); submit() does not wait.
"""
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from flask import has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

_WROTE = "gatehouse_wrote"
_POOL_THREADS = 4  # without gevent: threads that run submitted calls, started as calls come

log = logging.getLogger("gatehouse.blocking")
_pool = None
_pool_lock = threading.Lock()


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


def _patched():
    """Say whether this process runs on gevent's event loop (monkey-patched)."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return monkey.is_module_patched("socket")


def run_blocking(func, *args, **kwargs):
    """Call func in gevent's thread pool when the process is monkey-patched, else directly."""
    release_idle_connection()
    if _patched():
        import gevent

        return gevent.get_hub().threadpool.apply(func, args, kwargs)
    return func(*args, **kwargs)


def submit(func, *args, done=None):
    """Start func(*args) off the event loop and return at once; done(), if given, runs once it has finished.

    On gevent the call runs in the hub's thread pool and done() on the event loop; without gevent,
    in a few threads of this process. Nobody waits for the result: an error is logged.
    """
    if _patched():
        import gevent

        result = gevent.get_hub().threadpool.spawn(_logged, func, *args)
        if done is not None:
            result.rawlink(lambda _result: done())
        return
    future = _threads().submit(_logged, func, *args)
    if done is not None:
        future.add_done_callback(lambda _future: done())


def _logged(func, *args):
    """Call func, logging what it raises (a submitted call has nobody to raise to)."""
    try:
        func(*args)
    except Exception:
        log.exception("%s failed off the event loop", getattr(func, "__qualname__", func))


def _threads():
    """Return this process's pool of threads for submitted calls (without gevent), made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_POOL_THREADS, thread_name_prefix="gatehouse-blocking")
        return _pool
