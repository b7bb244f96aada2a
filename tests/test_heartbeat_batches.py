"""The heartbeat writes every live session of the process, in batches (one statement each), on SQLite and
PostgreSQL: every open row gets the beat and its byte counters, an ended row is left alone."""
import uuid
from datetime import timedelta
from types import SimpleNamespace

import sqlalchemy as sa

from app.dbtypes import now_utc
from app.extensions import db
from app.terminals import registry
from app.terminals.models import TerminalSession


def open_rows(count, beat):
    """Insert count open session rows last beaten at beat; return their ids."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    db.session.execute(sa.insert(TerminalSession), [
        {"id": sid, "actor": "admin", "target": "web (127.0.0.1:22)", "worker": "test:1", "started_at": beat,
         "heartbeat_at": beat, "bytes_in": 0, "bytes_out": 0} for sid in ids])
    db.session.commit()
    return ids


def held(session_id, n):
    """Return an idle terminal of this session as the registry sees it, with n bytes each way."""
    return SimpleNamespace(metadata=SimpleNamespace(id=session_id), login_id=None, input_at=0.0,
                           activity_written_at=0.0, bridge=SimpleNamespace(bytes_in=n, bytes_out=2 * n))


def test_every_live_session_is_beaten_across_batches(any_app, monkeypatch):
    monkeypatch.setattr(registry, "HEARTBEAT_BATCH", 7)
    old = now_utc() - timedelta(minutes=5)
    with any_app.app_context():
        ids = open_rows(30, old)
        ended = open_rows(1, old)[0]
        db.session.execute(sa.update(TerminalSession).where(TerminalSession.id == ended).values(ended_at=old))
        db.session.commit()
        terminals = [held(sid, n) for n, sid in enumerate(ids + [ended], start=1)]
        for terminal in terminals:
            registry.hold(terminal)
        try:
            assert registry.heartbeat() == 31
        finally:
            for terminal in terminals:
                registry.release(terminal)
        rows = {row.id: row for row in db.session.scalars(sa.select(TerminalSession))}
    for n, sid in enumerate(ids, start=1):
        assert rows[sid].heartbeat_at > old + timedelta(minutes=4)
        assert (rows[sid].bytes_in, rows[sid].bytes_out) == (n, 2 * n)
    assert (rows[ended].heartbeat_at, rows[ended].bytes_in) == (old, 0)


def test_no_terminals_no_write(app):
    with app.app_context():
        assert registry.heartbeat() == 0
