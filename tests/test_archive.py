"""Issue 13, item 7: archived batches are immutable files sealed by signed manifests, and verify --archive names
every alteration."""
import base64
import gzip
import json
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from app.audit import archive, chain, checkpoints, events, retention
from app.audit.events import chain_hash, record
from app.audit.models import AuditEvent
from app.dbtypes import now_utc
from app.extensions import db


def prune_into_archive(app, monkeypatch, folder):
    """Write events over six days, then prune them into the archive in batches of 3; return the manifests."""
    start = now_utc()
    with app.app_context():
        for day in range(6):
            for n in range(2):
                monkeypatch.setattr(events, "now_utc", lambda moment=start + timedelta(days=day, minutes=n): moment)
                record("auth.login_failed", f"failed log in as user{day}-{n}", outcome="failure", actor=f"user{day}",
                       details={"reason": "wrong_password"})
        monkeypatch.setattr(events, "now_utc", lambda: start + timedelta(days=30))
        record("auth.login", "logged in", actor="kept")
        monkeypatch.undo()
        result = retention.prune(now=start + timedelta(days=30, seconds=1), batch_size=3, archive_dir=str(folder))
    assert result.count == 13  # the first admin's event and twelve failed log-ins
    return sorted(folder.glob("*.manifest.json"), key=lambda path: int(path.name.split("-")[1]))


def verify_archive(app, folder, *args):
    """Run `flask audit verify --archive` and return (exit code, output)."""
    result = app.test_cli_runner().invoke(args=["audit", "verify", "--archive", str(folder), *args])
    return result.exit_code, result.output


def pubkey(app):
    with app.app_context():
        return chain.public_text(checkpoints.signing_key().public_key())


def rows_of(path):
    """Return the rows of an archive file."""
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]


def write_rows(path, rows):
    path.write_bytes(gzip.compress("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode(), mtime=0))


def test_prune_writes_files_and_a_signed_manifest_per_batch(app, monkeypatch, tmp_path):
    folder = tmp_path / "archive"
    manifests = prune_into_archive(app, monkeypatch, folder)
    assert [path.name for path in manifests] == [f"audit-{i}-{min(i + 2, 13)}.manifest.json" for i in range(1, 14, 3)]
    first = json.loads(manifests[0].read_text())
    assert first["format"] == archive.FORMAT and (first["first_id"], first["last_id"], first["count"]) == (1, 3, 3)
    assert first["prev_hash"] == "0" * 64 and len(first["signature"]) == 88
    day_files = sorted(path.name for path in folder.glob("*.jsonl.gz"))
    listed = sorted(entry["name"] for path in manifests for entry in json.loads(path.read_text())["files"])
    assert day_files == listed and len(day_files) > len(manifests)  # a batch spanning two days has two files
    assert all(name.startswith("audit-20") for name in day_files)
    rows = [row for name in day_files for row in rows_of(folder / name)]
    assert sorted(row["id"] for row in rows) == list(range(1, 14))
    assert not list(folder.glob(".*"))  # no temporary file left

    code, output = verify_archive(app, folder)
    assert code == 0, output
    assert output.splitlines()[-1] == "OK: archive 5 manifests, 8 files, 13 events 1..13"
    code, output = verify_archive(app, folder, "--pubkey", pubkey(app))
    assert code == 0, output
    with app.app_context():
        verified = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.verified")).all()
    assert verified[-1].outcome == "success" and verified[-1].details["manifests"] == 5
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 0  # the trail's verify as before


def flip_a_byte(folder, manifests):
    name = json.loads(manifests[1].read_text())["files"][0]["name"]
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    return [f"ARCHIVE {name}: its SHA-256 differs from the one {manifests[1].name} lists"]


def edit_a_row_and_rehash(folder, manifests):
    """Change a row's message and recompute its hash, as someone without the key could."""
    name = json.loads(manifests[2].read_text())["files"][0]["name"]
    rows = rows_of(folder / name)
    rows[0]["message"] = "nothing happened"
    rows[0]["hash"] = chain_hash(rows[0]["prev_hash"], {**rows[0], "occurred_at": _time(rows[0])})
    write_rows(folder / name, rows)
    return [f"ARCHIVE {name}: its SHA-256 differs", f"event {rows[0]['id'] + 1}: does not link to the event before it"]


def _time(row):
    """Return a row's time as the chain hashes it."""
    return datetime.fromisoformat(row["occurred_at"])


def delete_a_file(folder, manifests):
    entry = json.loads(manifests[3].read_text())["files"][0]
    (folder / entry["name"]).unlink()
    return [f"ARCHIVE {entry['name']}: missing (listed in {manifests[3].name}, events {entry['first_id']}.."]


def alter_a_manifest(folder, manifests):
    """Change a manifest's time: its files still match, its signature does not."""
    manifest = json.loads(manifests[1].read_text())
    manifest["created_at"] = "2020-01-01T00:00:00.000000Z"
    manifests[1].write_text(json.dumps(manifest))
    return [f"ARCHIVE {manifests[1].name}: its signature does not verify (the manifest was forged or altered)"]


def forge_a_manifest(folder, manifests):
    """Re-sign an edited manifest with another key."""
    other = Ed25519PrivateKey.generate()
    manifest = json.loads(manifests[0].read_text())
    manifest["key_id"] = chain.key_id(other.public_key())
    manifest["signature"] = base64.b64encode(other.sign(archive.signed_bytes(manifest))).decode()
    manifests[0].write_text(json.dumps(manifest))
    return [f"ARCHIVE {manifests[0].name}: signed by key {manifest['key_id']}, not by the given key"]


def delete_a_manifest(folder, manifests):
    files = json.loads(manifests[2].read_text())["files"]
    manifests[2].unlink()
    return [f"ARCHIVE {manifests[3].name}: events 7..9 are in no manifest (a manifest was deleted"] + [
        f"ARCHIVE {entry['name']}: no manifest covers it" for entry in files]


TAMPERS = [flip_a_byte, edit_a_row_and_rehash, delete_a_file, alter_a_manifest, forge_a_manifest, delete_a_manifest]


@pytest.mark.parametrize("tamper", TAMPERS, ids=[t.__name__ for t in TAMPERS])
def test_an_altered_archive_is_detected_and_named(app, monkeypatch, tmp_path, tamper):
    folder = tmp_path / "archive"
    manifests = prune_into_archive(app, monkeypatch, folder)
    expected = tamper(folder, manifests)
    code, output = verify_archive(app, folder, "--pubkey", pubkey(app))
    assert code == 1, output
    for text in expected:
        assert text in output, output
    assert output.splitlines()[-1].startswith("ARCHIVE FAILED (")
    with app.app_context():
        verified = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.verified")).all()
    assert verified[-1].outcome == "failure" and verified[-1].severity == "critical"


def test_a_wrong_public_key_fails_every_manifest(app, monkeypatch, tmp_path):
    folder = tmp_path / "archive"
    prune_into_archive(app, monkeypatch, folder)
    other = chain.public_text(Ed25519PrivateKey.generate().public_key())
    code, output = verify_archive(app, folder, "--pubkey", other)
    assert code == 1 and output.count("not by the given key") == 5, output


def test_the_kept_trail_must_follow_the_archive(app, monkeypatch, tmp_path):
    """The oldest kept event links to the archive's last: a rewritten link is named."""
    folder = tmp_path / "archive"
    prune_into_archive(app, monkeypatch, folder)
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.id == 14).values(prev_hash="f" * 64))
    code, output = verify_archive(app, folder)
    assert code == 1 and "ARCHIVE: event 14 of the trail does not link to the archive's last event 13" in output


def test_older_unsigned_archives_are_noted_not_failed(app, monkeypatch, tmp_path):
    folder = tmp_path / "archive"
    prune_into_archive(app, monkeypatch, folder)
    (folder / "audit-2025-01-01.jsonl.gz").write_bytes(gzip.compress(b"{}\n"))
    code, output = verify_archive(app, folder)
    assert code == 0, output
    assert "note: ARCHIVE audit-2025-01-01.jsonl.gz: an older unsigned archive" in output


def test_an_altered_archive_is_detected_on_postgresql(pg_app, monkeypatch, tmp_path):
    folder = tmp_path / "archive"
    manifests = prune_into_archive(pg_app, monkeypatch, folder)
    assert verify_archive(pg_app, folder)[0] == 0
    expected = edit_a_row_and_rehash(folder, manifests)
    code, output = verify_archive(pg_app, folder, "--pubkey", pubkey(pg_app))
    assert code == 1 and all(text in output for text in expected), output


def test_a_batch_archived_by_an_interrupted_prune_is_not_archived_twice(app, monkeypatch, tmp_path):
    """Killed between its archive and its delete, a prune leaves a manifest; the next one goes on after it."""
    folder = tmp_path / "archive"
    with app.app_context():
        archive.write(folder, 0, 5)  # the rows stay: the delete never happened
        assert archive.write(folder, 0, 5) == []  # nothing new, nothing rewritten
    manifests = prune_into_archive(app, monkeypatch, folder)
    assert [path.name for path in manifests][:3] == ["audit-1-1.manifest.json", "audit-2-3.manifest.json",
                                                    "audit-4-6.manifest.json"]
    code, output = verify_archive(app, folder)
    assert code == 0, output
