"""Recordings against their seals (`flask audit verify --recordings`) and their retention after the events."""
import logging
import shutil
import struct
import uuid
from datetime import timedelta

import pytest
from flask import current_app
from sqlalchemy import func, select

from app.audit import events
from app.audit import retention as audit_retention
from app.audit.events import record
from app.audit.models import AuditEvent
from app.crypto import recording_key
from app.dbtypes import iso_utc, now_utc
from app.extensions import db
from app.recording import retention as recording_retention
from app.recording.chunks import MAGIC
from app.recording.recorder import Recorder
from app.recording.store import open_store
from app.terminals import session_commands, session_rows
from app.terminals.commands import CommandDetector, tokens
from app.terminals.models import SessionCommand, TerminalSession
from app.terminals.session_events import SessionMetadata

TARGET = "db1 (127.0.0.1:22)"


def store():
    """Return the app's recording store."""
    return open_store(current_app.config)


def store_path(app, session_id):
    """Return the file of a session's recording."""
    with app.app_context():
        return store().path(session_id)


def add_session(monkeypatch, at=None, *, end=True, recorded=True):
    """Store a session as a terminal does, its events at `at`: row, start, recording, commands, end with its seal."""
    at = at or now_utc()
    with monkeypatch.context() as clock:
        clock.setattr(events, "now_utc", lambda: at)
        row = TerminalSession(id=str(uuid.uuid4()), user_id=1, actor="admin", target=TARGET, source_ip="127.0.0.1",
                              worker="elsewhere:1", started_at=at - timedelta(minutes=5), heartbeat_at=at)
        db.session.add(row)
        db.session.commit()
        facts = SessionMetadata.of(row)
        record("session.started", f"started session with {TARGET}", actor="admin", user_id=1, target=TARGET,
               session_id=facts.id, source_ip="127.0.0.1")
        recorder = None
        if recorded:
            recorder = Recorder(store(), facts.id, recording_key(), cols=80, rows=24, title=f"admin on {TARGET}",
                                detector=CommandDetector(80, 24), tokens=tokens)
            recorder.output(f"session {facts.id}\r\n".encode() * 50)
            recorder.flush()  # a chunk of its own, so a cut can drop whole chunks
            recorder.resize(100, 30)
            recorder.input(b"ls\r")
            recorder.output(b"ls\r\nREADME\r\n$ ")
            recorder.flush()
        session_commands.save_commands(facts, [(1.0, "ls"), (2.0, "whoami")])
        if not end:
            return facts.id, recorder
        seal = recorder.finish() if recorder else None
        session_rows.close_row(facts, "client_closed", 3, 1000, at, recording=seal)
    return facts.id, None


def chunk_starts(data):
    """Return the offset of each chunk in a stored recording."""
    starts, at = [], len(MAGIC)
    while at < len(data):
        starts.append(at)
        length, _flags = struct.unpack(">IB", data[at:at + 5])
        at += 5 + length
    return starts


def flip_in_first_chunk(path):
    """Change one byte inside the first chunk."""
    data = bytearray(path.read_bytes())
    data[chunk_starts(bytes(data))[0] + 5 + 12 + 3] ^= 0x01  # one byte of the first chunk's ciphertext
    path.write_bytes(bytes(data))


def flip_last_byte(path):
    """Change the file's last byte."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x80  # the last chunk's authentication tag
    path.write_bytes(bytes(data))


def cut_mid_chunk(path):
    """Cut the file inside its last chunk, as a torn copy would."""
    path.write_bytes(path.read_bytes()[:-30])


def drop_last_chunk(path):
    """Cut the file at the start of its last chunk."""
    data = path.read_bytes()
    path.write_bytes(data[:chunk_starts(data)[-1]])  # whole chunks only: no torn end, just no end mark


def verified_events():
    """Return (outcome, details) of each audit.verified event, oldest first."""
    rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.verified")
                              .order_by(AuditEvent.id)).all()
    return [(e.outcome, e.details) for e in rows]


def test_verify_passes_on_intact_recordings_and_skips_open_and_unrecorded_sessions(app, runner, monkeypatch):
    with app.app_context():
        for _ in range(3):
            add_session(monkeypatch)
        add_session(monkeypatch, recorded=False)  # RECORDING=off at the time: a seal-less end, no file
        _, live = add_session(monkeypatch, end=False)  # still being written
    result = runner.invoke(args=["audit", "verify", "--recordings"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: ") and result.output.endswith("; 3 recordings verified\n")
    assert result.output.count("\n") == 1
    with app.app_context():
        outcome, details = verified_events()[-1]
    assert outcome == "success" and details["recordings_verified"] == 3 and details["recording_problems"] == 0
    live.finish()


@pytest.mark.parametrize("damage, state", [
    (flip_in_first_chunk, "altered"),
    (flip_last_byte, "altered"),
    (lambda path: path.unlink(), "missing"),
    (cut_mid_chunk, "truncated"),
    (drop_last_chunk, "truncated"),
], ids=["byte-flipped", "tag-flipped", "deleted", "cut-mid-chunk", "last-chunk-dropped"])
def test_verify_names_the_damaged_recording(app, runner, monkeypatch, damage, state):
    with app.app_context():
        damaged, kept = add_session(monkeypatch)[0], add_session(monkeypatch)[0]
    damage(store_path(app, damaged))
    result = runner.invoke(args=["audit", "verify", "--recordings"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"recording {damaged} (admin on {TARGET}): {state}")
    assert lines[1].startswith("RECORDINGS FAILED (1 listed above); chain OK: ")
    assert lines[1].endswith("; 1 recordings verified, 1 with problems") and kept not in result.output
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0  # the chain itself is intact
    with app.app_context():
        (first, details), (second, _) = verified_events()
    assert first == "failure" and details["recordings_verified"] == 1 and details["recording_problems"] == 1
    assert second == "success"


def test_verify_names_unsealed_files_but_not_open_sessions(app, runner, monkeypatch):
    with app.app_context():
        _, live = add_session(monkeypatch, end=False)
        # Ended, but its session.ended never reached the trail (the trail was down at that moment).
        unsealed, recorder = add_session(monkeypatch, end=False)
        recorder.finish()
        db.session.execute(TerminalSession.__table__.update().where(TerminalSession.id == unsealed)
                           .values(ended_at=now_utc(), end_reason="client_closed"))
        db.session.commit()
        sealed = add_session(monkeypatch)[0]
        stray = str(uuid.uuid4())  # a file no session and no event knows
        shutil.copy(store().path(sealed), store().path(stray))
    result = runner.invoke(args=["audit", "verify", "--recordings"])
    assert result.exit_code == 1
    assert f"recording {unsealed} (admin on {TARGET}): unsealed" in result.output
    assert f"recording {stray}: unsealed (no session of that id)" in result.output
    assert "1 recordings verified, 2 with problems" in result.output
    live.finish()


def check_prune(app, monkeypatch):
    """Prune with "now" ten days ahead: what is named by no kept event goes, in batches, and is audited."""
    monkeypatch.setattr(recording_retention, "BATCH", 2)
    start = now_utc()
    ahead = start + timedelta(days=10)
    with app.app_context():
        old = [add_session(monkeypatch, start)[0] for _ in range(5)]
        unrecorded = add_session(monkeypatch, start, recorded=False)[0]
        viewed = add_session(monkeypatch, start)[0]
        still_open, live = add_session(monkeypatch, start, end=False)
        recent = add_session(monkeypatch, ahead - timedelta(days=1))[0]
        with monkeypatch.context() as clock:  # looked at yesterday: this event keeps the old session
            clock.setattr(events, "now_utc", lambda: ahead - timedelta(days=1))
            record("recording.viewed", f"viewed the recording of admin on {TARGET}", target=TARGET,
                   session_id=viewed)
        freed = sum(store().size(i) for i in old)

        result = audit_retention.prune(now=ahead)

        cutoff = ahead - timedelta(days=7)
        assert result.count > 0 and result.notes == (f"pruned 5 recordings ({freed} bytes) older than 7 days",)
        assert not any(store().path(i).exists() for i in old)
        assert all(store().path(i).exists() for i in (viewed, still_open, recent))
        rows = set(db.session.scalars(select(TerminalSession.id)))
        assert rows == {viewed, still_open, recent} and unrecorded not in rows
        commands = set(db.session.scalars(select(SessionCommand.session_id)))
        assert commands == {viewed, still_open, recent}
        pruned = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "recording.pruned")).all()
        assert len(pruned) == 1 and pruned[0].actor == "system"
        assert pruned[0].details == {"count": 5, "bytes": freed, "sessions": 6, "cutoff": iso_utc(cutoff),
                                     "retention_days": 7, "not_deleted": 0}
        db.session.rollback()

        # Nothing is left to prune: no second event. The kept ones verify, none is reported missing.
        assert audit_retention.prune(now=ahead).notes == ("pruned 0 recordings (0 bytes) older than 7 days",)
        assert db.session.scalar(select(func.count()).where(AuditEvent.action == "recording.pruned")) == 1
        db.session.rollback()
    result = app.test_cli_runner().invoke(args=["audit", "verify", "--recordings"])
    assert result.exit_code == 0 and result.output.endswith("; 1 recordings verified\n"), result.output
    live.finish()


def test_prune_takes_recordings_only_after_their_events_on_sqlite(app, monkeypatch):
    check_prune(app, monkeypatch)


def test_prune_takes_recordings_only_after_their_events_on_postgresql(pg_app, monkeypatch):
    check_prune(pg_app, monkeypatch)


def test_recordings_kept_longer_outlive_their_events_without_failing_verify(app, runner, monkeypatch):
    app.config["RECORDING_RETENTION_DAYS"] = 30
    start = now_utc()
    with app.app_context():
        session_id = add_session(monkeypatch, start)[0]
        add_session(monkeypatch, start + timedelta(days=9))  # so the prune keeps a newer event
        assert audit_retention.prune(now=start + timedelta(days=10)).count > 0
        assert not db.session.scalars(select(AuditEvent).where(AuditEvent.session_id == session_id)).all()
        assert store().path(session_id).exists()
        db.session.rollback()
    result = runner.invoke(args=["audit", "verify", "--recordings"])
    assert result.exit_code == 0 and session_id not in result.output, result.output
    with app.app_context():
        assert recording_retention.prune_recordings(now=start + timedelta(days=31))[0] == 1
        assert not store().path(session_id).exists()


def test_recordings_kept_shorter_wait_for_their_events(app, monkeypatch):
    app.config["RECORDING_RETENTION_DAYS"] = 3
    start = now_utc()
    with app.app_context():
        session_id = add_session(monkeypatch, start)[0]
        result = audit_retention.prune(now=start + timedelta(days=5))  # events: 7 days, nothing expired
        assert result.count == 0 and result.notes == ("pruned 0 recordings (0 bytes) older than 3 days",)
        assert store().path(session_id).exists() and db.session.get(TerminalSession, session_id)


def test_a_recording_that_cannot_be_deleted_is_logged_and_retried(app, runner, monkeypatch, caplog):
    start = now_utc()
    ahead = start + timedelta(days=10)
    with app.app_context():
        stuck, gone = add_session(monkeypatch, start)[0], add_session(monkeypatch, start)[0]
        add_session(monkeypatch, ahead - timedelta(days=1))
        path = store().path(stuck)
        aside = path.with_name("aside")
        path.rename(aside)
        path.mkdir()  # a non-empty directory in its place: unlink fails, for root too
        (path / "something").write_bytes(b"x")
        with caplog.at_level(logging.ERROR, logger="gatehouse.recordings"):
            result = audit_retention.prune(now=ahead)
        assert "1 could not be deleted (logged, tried again next time)" in result.notes[0]
        errors = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "gatehouse.recordings"]
        assert len(errors) == 1 and f"recording {stuck} could not be deleted (will retry)" in errors[0].getMessage()
        assert not store().path(gone).exists() and db.session.get(TerminalSession, gone) is None
        assert db.session.get(TerminalSession, stuck) is not None  # kept with its commands for the next run
        assert db.session.scalar(select(func.count()).where(SessionCommand.session_id == stuck)) == 2
        pruned = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "recording.pruned")).one()
        assert pruned.details["count"] == 1 and pruned.details["not_deleted"] == 1
        assert pruned.message.endswith("; 1 could not be deleted")
        db.session.rollback()
        shutil.rmtree(path)
        aside.rename(path)
    monkeypatch.setattr(audit_retention, "now_utc", lambda: ahead)
    result = runner.invoke(args=["audit", "prune"])  # the next run, as an operator starts it
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].startswith("pruned 1 recordings (")
    with app.app_context():
        assert not store().path(stuck).exists() and db.session.get(TerminalSession, stuck) is None
        assert not db.session.scalars(select(SessionCommand).where(SessionCommand.session_id == stuck)).all()


def test_a_failing_recordings_prune_does_not_stop_the_events_prune(app, monkeypatch, caplog):
    def broken(_config):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(recording_retention, "open_store", broken)
    with app.app_context():
        result = audit_retention.prune(now=now_utc() + timedelta(days=10))
    assert result.count > 0 and result.notes == ("pruning what goes with the events failed (see the log)",)
    assert any(r.levelname == "ERROR" and "pruning what goes with the events failed" in r.getMessage()
               for r in caplog.records)
