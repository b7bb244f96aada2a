"""Issue 13, item 2: the chain head signed with a key outside the database, and verify holding the trail to it."""
import base64
import json
import os
import shutil
import stat
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, func, select, update

from app.audit import chain, checkpoints, events, retention
from app.audit.events import chain_hash, record
from app.audit.models import GENESIS_HASH, AuditChainHead, AuditEvent
from app.extensions import db
from app.jobs import table as jobs
from tests.support import make_app, wait_for


def fill(app, n):
    """Record n ordinary events."""
    with app.app_context():
        for i in range(n):
            record("auth.login_failed", f"failed log in as user{i}", outcome="failure", actor=f"user{i}",
                   details={"reason": "wrong_password", "n": i})


def sign(app):
    """Write one checkpoint now and return it."""
    with app.app_context():
        return checkpoints.checkpoint()


def execute(app, *statements):
    with app.app_context(), db.engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def verify(app, *args):
    """Run `flask audit verify` and return (exit code, output)."""
    result = app.test_cli_runner().invoke(args=["audit", "verify", *args])
    return result.exit_code, result.output


def last_verified(app):
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.verified")
                                  .order_by(AuditEvent.id.desc())).first()


def delete_newest(app, n):
    """Delete the newest n rows and rewind audit_chain_head to the last kept row, as an intruder would."""
    with app.app_context():
        top = db.session.scalar(select(func.max(AuditEvent.id)))
        db.session.rollback()
    keep = top - n
    execute(app, delete(AuditEvent).where(AuditEvent.id > keep))
    with app.app_context():
        kept_hash = db.session.scalar(select(AuditEvent.hash).where(AuditEvent.id == keep))
        db.session.rollback()
    execute(app, update(AuditChainHead).where(AuditChainHead.id == 1).values(last_id=keep, last_hash=kept_hash))
    return keep


def rewrite_chain(app):
    """Alter a row and recompute every hash and the head, without the signing key."""
    execute(app, update(AuditEvent).where(AuditEvent.id == 3).values(message="nothing happened"))
    rehash(app)


def rehash(app):
    """Recompute every row's hash and the head row, as someone without the signing key could."""
    with app.app_context():
        rows = db.session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
        prev = GENESIS_HASH
        for row in rows:
            fields = {c.name: getattr(row, c.name) for c in AuditEvent.__table__.columns}
            row.prev_hash, row.hash = prev, chain_hash(prev, fields)
            prev = row.hash
        db.session.execute(update(AuditChainHead).where(AuditChainHead.id == 1)
                           .values(last_id=rows[-1].id, last_hash=prev))
        db.session.commit()


def test_key_created_private_and_pubkey_printed(app, runner, tmp_path):
    """The first use makes the key file 0600 in a 0700 folder; pubkey prints its public half."""
    os.chmod(tmp_path, 0o755)
    key_file = tmp_path / "keys" / "signing"
    app.config["AUDIT_SIGNING_KEY"] = str(key_file)
    result = runner.invoke(args=["audit", "pubkey"])
    assert result.exit_code == 0
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    with app.app_context():
        public = checkpoints.signing_key().public_key()
    assert result.output.strip() == chain.public_text(public)
    assert len(chain.parse_public_key(result.output).public_bytes_raw()) == 32
    assert runner.invoke(args=["audit", "pubkey"]).output == result.output  # made once, then read


def test_default_paths_are_beside_the_secret_key(app, tmp_path):
    """Unset, the key and the checkpoint file live in the instance folder, not in the database."""
    fill(app, 2)
    sign(app)
    assert stat.S_IMODE((tmp_path / "audit_signing_key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "audit_checkpoints.jsonl").stat().st_mode) == 0o600
    assert (tmp_path / "audit_signing_key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_checkpoint_only_when_the_head_moved(app, tmp_path):
    """A checkpoint signs the head; another comes only after new events."""
    fill(app, 3)
    first = sign(app)
    assert first["head_id"] == 4 and first["event_id"] == 5  # event 1 made the first admin
    assert sign(app) is None  # nothing new since: the checkpoint is the head
    fill(app, 1)
    second = sign(app)
    assert second["head_id"] == 6 and second["event_id"] == 7
    with app.app_context():
        row = db.session.scalars(select(AuditEvent).where(AuditEvent.id == 7)).one()
        head_hash = db.session.scalar(select(AuditEvent.hash).where(AuditEvent.id == 6))
    assert (row.action, row.severity, row.actor) == ("audit.checkpoint", "info", "system")
    assert row.details["head_hash"] == head_hash and set(row.details) == set(chain.CHECKPOINT_FIELDS)
    lines = [json.loads(line) for line in (tmp_path / "audit_checkpoints.jsonl").read_text().splitlines()]
    assert lines == [first, second]


def test_maintenance_loop_signs_under_a_lease(tmp_path):
    """The loop writes periodic checkpoints while the trail grows, one per move of the head."""
    app = make_app(tmp_path, AUDIT_CHECKPOINT_SECONDS=1)
    try:
        fill(app, 2)
        jobs.start(app)

        def count():
            with app.app_context():
                found = db.session.scalar(select(func.count()).where(AuditEvent.action == "audit.checkpoint"))
                db.session.rollback()
                return found

        wait_for(lambda: count() == 1)
        fill(app, 1)
        wait_for(lambda: count() == 2)
    finally:
        jobs.stop(app)
        with app.app_context():
            db.engine.dispose()
    assert count() == 2  # the head did not move after the second one


def test_verify_passes_on_an_intact_trail(any_app):
    fill(any_app, 5)
    sign(any_app)
    fill(any_app, 5)
    sign(any_app)
    code, output = verify(any_app)
    assert code == 0, output
    assert output.splitlines()[-1].startswith("OK: 13 events") and "2 checkpoints checked" in output
    assert last_verified(any_app).details["checkpoints_verified"] == 2


def test_newest_rows_deleted_and_head_rewound(any_app):
    """(a) The newest 10 rows, the last checkpoint among them, go and the head is rewound: the file names it."""
    fill(any_app, 5)
    sign(any_app)  # event 7 signs head 6 (event 1 made the first admin)
    fill(any_app, 6)
    newest = sign(any_app)  # event 14 signs head 13
    fill(any_app, 2)
    keep = delete_newest(any_app, 10)
    assert keep == 6
    code, output = verify(any_app)
    assert code == 1
    assert "OK: 6 events" in output  # the chain alone looks intact
    named = f"CHECKPOINT event {newest['event_id']} (from "
    assert f"{named}" in output and "names event 13, which is gone" in output
    assert "the checkpoint event 14 itself is missing" in output
    assert "trail now ends at event 6: the newest rows were deleted and the head rewound" in output
    assert "CHECKPOINT event 7 (from" in output  # the first checkpoint is gone too
    verified = last_verified(any_app)
    assert verified.outcome == "failure" and verified.severity == "critical"
    assert verified.details["checkpoint_problems"] >= 2 and "CHECKPOINT event 14" in verified.message


def test_newest_rows_deleted_past_a_kept_checkpoint(any_app):
    """(a) A kept checkpoint whose head row was deleted (the intruder spared the checkpoint) is named."""
    fill(any_app, 5)
    cp = sign(any_app)
    # An intruder deletes rows 4..6 and moves the checkpoint back after row 3, recomputing: the chain checks.
    execute(any_app, delete(AuditEvent).where(AuditEvent.id.in_([4, 5, 6])))
    execute(any_app, update(AuditEvent).where(AuditEvent.id == 7).values(id=4))
    rehash(any_app)  # the head now ends at row 4
    os.remove(checkpoints_file(any_app))  # and removes the file
    code, output = verify(any_app)
    assert code == 1 and "OK: 4 events" in output
    assert "CHECKPOINT event 4: it names event 6, which is gone" in output
    assert cp["head_id"] == 6


def checkpoints_file(app):
    with app.app_context():
        return checkpoints.checkpoint_file()


def test_recomputed_chain_is_caught(any_app):
    """(b) A chain rewritten with valid hashes but no key contradicts its checkpoints."""
    fill(any_app, 5)
    sign(any_app)
    fill(any_app, 2)
    rewrite_chain(any_app)
    code, output = verify(any_app)
    assert code == 1 and "OK: 9 events" in output
    assert "CHECKPOINT event 7: it names event 6 with hash" in output and "the chain was rewritten" in output
    assert output.splitlines()[-1].startswith("CHECKPOINTS FAILED")


def test_deleted_checkpoint_is_named_by_the_file(any_app):
    """(c) A checkpoint deleted from the middle breaks the chain, and the file still names it."""
    fill(any_app, 3)
    sign(any_app)  # event 5
    fill(any_app, 3)
    execute(any_app, delete(AuditEvent).where(AuditEvent.id == 5))
    code, output = verify(any_app)
    assert code == 1
    assert "BROKEN at event id 6: rows 5..5 are missing" in output
    assert "CHECKPOINT event 5 (from" in output and "the checkpoint event 5 itself is missing" in output


def test_forged_checkpoint_fails_its_signature(any_app):
    """(d) A checkpoint signed with another key is named."""
    fill(any_app, 3)
    sign(any_app)
    other = Ed25519PrivateKey.generate()
    with any_app.app_context():
        head = db.session.execute(select(AuditChainHead)).scalar_one()
        details = {"head_id": head.last_id, "head_hash": head.last_hash, "signed_at": "2026-01-01T00:00:00.000000Z",
                   "key_id": chain.key_id(other.public_key())}
        message = chain.checkpoint_bytes(details["head_id"], details["head_hash"], details["signed_at"],
                                           details["key_id"])
        details["signature"] = base64.b64encode(other.sign(message)).decode()
        record("audit.checkpoint", "signed the audit trail's head", actor="system", details=details)
        mine = chain.key_id(checkpoints.signing_key().public_key())
        # And one with this trail's key id but a signature of other bytes.
        record("audit.checkpoint", "signed the audit trail's head", actor="system",
               details={**details, "key_id": mine})
    code, output = verify(any_app)
    assert code == 1 and "OK: 7 events" in output
    assert f"CHECKPOINT event 6: it is signed by key {details['key_id']}, not by this trail's key {mine}" in output
    assert "CHECKPOINT event 7: its signature does not verify" in output


def test_verify_against_an_exported_file(app, runner, tmp_path):
    """--against: a copy of the database, tampered with, fails against checkpoints exported before."""
    fill(app, 5)
    sign(app)
    fill(app, 6)
    sign(app)
    fill(app, 2)
    exported = tmp_path / "kept-elsewhere.jsonl"
    assert runner.invoke(args=["audit", "checkpoints", "--out", str(exported)]).exit_code == 0
    assert len(exported.read_text().splitlines()) == 2
    pubkey = runner.invoke(args=["audit", "pubkey"]).output.strip()
    stdout = runner.invoke(args=["audit", "checkpoints"]).output
    assert stdout == exported.read_text()

    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    for name in ("test.db", "test.db-wal"):  # the newest pages may still be in the write-ahead log
        if (tmp_path / name).exists():
            shutil.copy(tmp_path / name, copy_dir / name)
    # The copy is checked where neither the key nor the checkpoint file is: only the exported lines and the pubkey.
    copy = make_app(copy_dir, SQLALCHEMY_DATABASE_URI=f"sqlite:///{copy_dir / 'test.db'}")
    try:
        code, output = verify(copy, "--against", str(exported), "--pubkey", pubkey)
        assert code == 0, output
        delete_newest(copy, 10)
        code, output = verify(copy)  # without the export, the copy looks fine
        assert code == 0 and "no signatures" in output
        code, output = verify(copy, "--against", str(exported), "--pubkey", pubkey)
        assert code == 1
        assert f"CHECKPOINT event 14 (from {exported})" in output and "names event 13, which is gone" in output
        # The wrong public key fails every signature.
        other = chain.public_text(Ed25519PrivateKey.generate().public_key())
        code, output = verify(copy, "--against", str(exported), "--pubkey", other)
        assert code == 1 and "not by this trail's key" in output
        code, output = verify(copy, "--pubkey", "not a key")
        assert code == 2 and "--pubkey" in output
    finally:
        with copy.app_context():
            db.engine.dispose()
    assert not (copy_dir / "audit_signing_key").exists()  # verify never makes a key


def test_prune_writes_a_checkpoint_and_verify_passes(any_app, monkeypatch):
    """A prune signs the head right after the cut; verify passes after it, old checkpoints pruned or not."""
    # The clock moves forward instead of back: the first admin's event is already written with today's time.
    start = datetime.now(timezone.utc)
    with any_app.app_context():
        for i in range(6):
            monkeypatch.setattr(events, "now_utc", lambda moment=start + timedelta(days=i): moment)
            record("auth.login_failed", f"failed {i}", outcome="failure", actor="x")
            if i == 2:
                checkpoints.checkpoint()  # this one is pruned with its head
        monkeypatch.setattr(events, "now_utc", lambda: start + timedelta(days=30))
        fill(any_app, 2)
        result = retention.prune(now=start + timedelta(days=30, seconds=1))
        monkeypatch.undo()
        assert result.count > 0
        newest = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        pruned = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.pruned")).one()
        assert newest.action == "audit.checkpoint" and newest.details["head_id"] == pruned.id
        db.session.rollback()
    code, output = verify(any_app)
    assert code == 0, output
    assert "2 checkpoints checked" in output  # the pruned one from the file, the new one
