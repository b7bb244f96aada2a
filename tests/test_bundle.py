"""Issue 13, item 7: an evidence bundle of two users' events and a real recorded session, checked offline with
the public key alone, and every tampering named."""
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from app import create_app
from app.audit import bundle, chain, events
from app.audit.models import AuditEvent
from app.dbtypes import iso_utc, now_utc
from app.extensions import db
from tests.support import ROOT, SECRET_KEY, WAIT_SECONDS, connect_terminal, new_user, read_until, session_of


def app_of(server):
    """Return the app on a live server's database, instance folder and recordings."""
    return create_app({"SECRET_KEY": SECRET_KEY, "SQLALCHEMY_DATABASE_URI": server.database_url,
                       "INSTANCE_DIR": str(server.workdir), "RECORDINGS_DIR": str(server.workdir / "recordings")})


def ended_seal(app, session_id, timeout=WAIT_SECONDS):
    """Wait for the session.ended event of a session; return its recording's seal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            details = db.session.scalar(select(AuditEvent.details).where(AuditEvent.action == "session.ended",
                                                                         AuditEvent.session_id == session_id))
            db.session.rollback()
        if details is not None:
            return details["recording"]
        time.sleep(0.2)
    raise AssertionError(f"no session.ended for {session_id}")


@pytest.fixture(scope="module")
def made(tmp_path_factory, module_live_servers, sshd):
    """Two users act on a real server, the admin records one terminal session; then two bundles are written."""
    workdir = tmp_path_factory.mktemp("bundle")
    server = module_live_servers(workdir=workdir / "server")
    start = now_utc() - timedelta(seconds=1)
    try:
        other, password = new_user(server)  # first, so that a bundle of theirs holds the admin's events too
        server.login(other, password)
        http = server.login()
        device = server.add_device(http, sshd, "bundled-" + uuid.uuid4().hex[:6])
        ws = connect_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
        session_id = session_of(ws)
        ws.send(b"echo evidence-$((40+2))\r")
        read_until(ws, b"evidence-42")
        ws.send(b"exit\r")
        app = app_of(server)
        seal = ended_seal(app, session_id)
        runner = app.test_cli_runner()
        window = ["--from", iso_utc(start), "--to", iso_utc(now_utc() + timedelta(minutes=1))]
        filters = {"all": [], "user": ["--user", other], "session": ["--session", session_id]}
        paths = {name: workdir / f"{name}.zip" for name in filters}
        outputs = {name: runner.invoke(args=["audit", "bundle", *window, "--out", str(paths[name]), *filters[name]])
                   for name in filters}
        pubkey = runner.invoke(args=["audit", "pubkey"]).output.strip()
        with app.app_context():
            bundled = db.session.execute(select(AuditEvent.actor, AuditEvent.details)
                                         .where(AuditEvent.action == "audit.bundled").order_by(AuditEvent.id)).all()
            db.engine.dispose()
    finally:
        server.stop()
    return {"paths": paths, "outputs": outputs, "pubkey": pubkey, "session": session_id, "seal": seal,
            "other": other, "bundled": bundled, "workdir": workdir}


def members(path):
    """Return the bundle's members as {name: bytes}."""
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rows_of(content):
    return [json.loads(line) for line in content.decode().splitlines()]


def test_a_bundle_of_two_users_and_a_recorded_session_verifies_offline(made, tmp_path):
    path = made["paths"]["all"]
    assert made["outputs"]["all"].exit_code == 0, made["outputs"]["all"].output
    output = made["outputs"]["all"].output
    assert output.startswith(f"wrote {path}: ") and "1 recordings" in output
    found = members(path)
    assert set(found) == {"bundle.json", "events.jsonl", "checkpoints.jsonl", "README.txt",
                          f"recordings/{made['session']}.cast"}
    cast = found[f"recordings/{made['session']}.cast"]
    assert hashlib.sha256(cast).hexdigest() == made["seal"]["sha256"] and b"evidence-42" in cast
    rows = rows_of(found["events.jsonl"])
    actors = {row["actor"] for row in rows if row["selected"]}
    assert {"admin", made["other"]} <= actors
    meta = json.loads(found["bundle.json"])
    assert meta["selected"] == sum(row["selected"] for row in rows) and meta["events"] == len(rows)
    assert meta["public_key"] == made["pubkey"] and meta["recordings"][0]["session_id"] == made["session"]
    everything = b"".join(found.values())
    assert b"PRIVATE KEY" not in everything and SECRET_KEY.encode() not in everything

    # On a machine without the database: no DATABASE_URL, an empty instance folder that stays empty, another cwd.
    instance = tmp_path / "instance"
    instance.mkdir()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "GATEHOUSE_INSTANCE": str(instance)}
    done = subprocess.run([sys.executable, "-m", "app.audit.bundle", str(path), "--pubkey", made["pubkey"]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"OK: bundle {path}: {len(rows)} events ({meta['selected']} selected)")
    assert done.stdout.rstrip().endswith("1 recordings verified") and not done.stderr
    assert list(instance.iterdir()) == []
    (tmp_path / "alone").mkdir()  # the checker needs no other file of the project than the chain's format
    alone = tmp_path / "alone" / "bundle.py"
    alone.write_bytes((ROOT / "app" / "audit" / "bundle.py").read_bytes())
    (tmp_path / "alone" / "chain.py").write_bytes((ROOT / "app" / "audit" / "chain.py").read_bytes())
    done = subprocess.run([sys.executable, str(alone), str(path), "--pubkey", made["pubkey"]], cwd=tmp_path,
                          env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("OK: bundle "), done.stdout + done.stderr

    # Without --pubkey the key inside is used, and said to prove nothing by itself.
    assert bundle.main([str(path)]) == 0
    verdict = bundle.check(path)
    assert not verdict.problems and "compare it with the one kept elsewhere" in verdict.notes[0]

    # Writing it was audited, with the file's hash, not its content.
    written = made["bundled"][0]
    assert written.details["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert written.details["recordings"] == 1 and written.details["file"] == "all.zip" and written.actor == "console"


def test_flask_verify_bundle_branches_before_the_database(made, tmp_path):
    """`flask audit verify --bundle` checks the file alone: the app's database is never read."""
    app = create_app({"SECRET_KEY": SECRET_KEY, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'none.db'}",
                      "INSTANCE_DIR": str(tmp_path)})  # an empty database without the schema
    result = app.test_cli_runner().invoke(args=["audit", "verify", "--bundle", str(made["paths"]["all"]),
                                                "--pubkey", made["pubkey"]])
    assert result.exit_code == 0 and result.output.startswith("OK: bundle "), result.output


def test_the_user_filter_selects_only_that_users_events(made):
    path = made["paths"]["user"]
    assert made["outputs"]["user"].exit_code == 0, made["outputs"]["user"].output
    rows = rows_of(members(path)["events.jsonl"])
    selected = [row for row in rows if row["selected"]]
    assert selected and all(row["actor"] == made["other"] for row in selected)
    assert rows[0]["selected"] and rows[0]["action"] == "auth.login"  # the segment starts at their first event
    assert {row["action"] for row in rows if not row["selected"]} >= {"session.started", "session.ended"}
    assert not [name for name in members(path) if name.startswith("recordings/")]  # the admin's session is not theirs
    verdict = bundle.check(path, chain.parse_public_key(made["pubkey"]))
    assert not verdict.problems and verdict.selected == len(selected)
    assert made["bundled"][1].details["user"] == made["other"]


def test_the_session_filter_selects_that_sessions_events_and_recording(made):
    path = made["paths"]["session"]
    assert made["outputs"]["session"].exit_code == 0, made["outputs"]["session"].output
    found = members(path)
    selected = [row for row in rows_of(found["events.jsonl"]) if row["selected"]]
    assert {row["action"] for row in selected} == {"session.started", "session.ended"}
    assert all(row["session_id"] == made["session"] for row in selected)
    assert f"recordings/{made['session']}.cast" in found
    verdict = bundle.check(path, chain.parse_public_key(made["pubkey"]))
    assert not verdict.problems and verdict.recordings == 1


def rewrite(path, out, change):
    """Copy a bundle with change(members) applied to its members."""
    found = members(path)
    change(found)
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in found.items():
            archive.writestr(name, content)
    return out


def edit_event(found, session_id):
    rows = rows_of(found["events.jsonl"])
    target = next(row for row in rows if row["selected"] and row["action"] == "session.started")
    target["target"] = "somewhere else (10.9.9.9:22)"
    found["events.jsonl"] = "".join(json.dumps(row) + "\n" for row in rows).encode()
    return [f"EVENT {target['id']}: its content was altered"]


def remove_middle_row(found, session_id):
    rows = rows_of(found["events.jsonl"])
    gone = rows.pop(len(rows) // 2)
    found["events.jsonl"] = "".join(json.dumps(row) + "\n" for row in rows).encode()
    return [f"EVENT {gone['id'] + 1}: events {gone['id']}..{gone['id']} are missing from the bundle"]


def forge_checkpoint_signature(found, session_id):
    lines = rows_of(found["checkpoints.jsonl"])
    signature = bytearray(base64.b64decode(lines[-1]["signature"]))
    signature[0] ^= 1
    lines[-1]["signature"] = base64.b64encode(bytes(signature)).decode()
    found["checkpoints.jsonl"] = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return [f"CHECKPOINT event {lines[-1]['event_id']}: its signature does not verify",
            "is not the head of a checkpoint that verifies"]


def change_recording(found, session_id):
    name = f"recordings/{session_id}.cast"
    found[name] = found[name].replace(b"evidence-42", b"evidence-43")
    return [f"RECORDING {session_id}: ", "(altered)"]


def remove_recording(found, session_id):
    del found[f"recordings/{session_id}.cast"]
    return [f"RECORDING {session_id}: missing (sealed by event "]


TAMPERS = [edit_event, remove_middle_row, forge_checkpoint_signature, change_recording, remove_recording]


@pytest.mark.parametrize("tamper", TAMPERS, ids=[t.__name__ for t in TAMPERS])
def test_a_tampered_bundle_is_detected_and_named(made, tmp_path, tamper):
    expected = []
    path = rewrite(made["paths"]["all"], tmp_path / "tampered.zip",
                   lambda found: expected.extend(tamper(found, made["session"])))
    verdict = bundle.check(path, chain.parse_public_key(made["pubkey"]))
    text = "\n".join(verdict.problems)
    assert all(part in text for part in expected), text
    assert str(verdict).startswith("BUNDLE FAILED (")
    assert bundle.main([str(path), "--pubkey", made["pubkey"]]) == 1


def test_a_wrong_public_key_fails(made):
    other = chain.public_text(Ed25519PrivateKey.generate().public_key())
    verdict = bundle.check(made["paths"]["all"], chain.parse_public_key(other))
    assert any("not by the given key" in problem for problem in verdict.problems), verdict.problems


def test_the_checker_and_the_app_share_the_chains_documented_forms():
    """One module holds the forms docs/audit.md documents; the checker hashes a row as a bundle holds it (time in
    ISO form) to the hash the app gives the row it writes."""
    assert events.HASHED_FIELDS == chain.HASHED_FIELDS == (
        "id", "occurred_at", "actor", "user_id", "action", "outcome", "severity", "message", "source_ip",
        "user_agent", "request_id", "target", "session_id", "details")
    assert chain.checkpoint_bytes(7, "ab" * 32, "2026-01-01T00:00:00.000000Z", "k") == (
        b"gatehouse-audit-checkpoint-v1\n7\n" + b"ab" * 32 + b"\n2026-01-01T00:00:00.000000Z\nk\n")
    key = Ed25519PrivateKey.generate().public_key()
    assert chain.key_id(key) == hashlib.sha256(key.public_bytes_raw()).hexdigest()[:16]
    row = {"id": 3, "occurred_at": now_utc(), "actor": "zoë", "user_id": None, "action": "auth.login", "outcome":
           "success", "severity": "info", "message": "logged in", "source_ip": "::1", "user_agent": None,
           "request_id": "r", "target": None, "session_id": None, "details": {"b": [1, 2.5], "a": "é"}}
    plain = events.plain(row)
    assert bundle.row_hash({**plain, "prev_hash": "0" * 64}) == events.chain_hash("0" * 64, row)


STORED = ROOT / "tests" / "data" / "bundle" / "made-2026-12.zip"


def test_a_bundle_written_before_the_chains_format_moved_still_verifies(tmp_path):
    """A bundle written with the code of December 2026 (a user filter, a checkpoint inside the segment, a sealed
    recording) verifies with the checker of today, in the app and as a script of its own."""
    pubkey = STORED.with_suffix(".pubkey").read_text().strip()
    verdict = bundle.check(STORED, chain.parse_public_key(pubkey))
    assert not verdict.problems and not verdict.notes, verdict.problems
    assert (verdict.events, verdict.selected, verdict.first_id, verdict.last_id, verdict.recordings) == (6, 4, 2, 7, 1)
    done = subprocess.run([sys.executable, "-m", "app.audit.bundle", str(STORED), "--pubkey", pubkey], cwd=tmp_path,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.startswith(f"OK: bundle {STORED}: 6 events (4 selected)"), done.stdout
    tampered = rewrite(STORED, tmp_path / "tampered.zip", lambda found: edit_event(found, "s-fixture"))
    assert bundle.check(tampered, chain.parse_public_key(pubkey)).problems


def test_a_range_that_selects_nothing_writes_no_file(runner, tmp_path):
    out = tmp_path / "empty.zip"
    result = runner.invoke(args=["audit", "bundle", "--from", "2001-01-01", "--to", "2001-01-02", "--out", str(out)])
    assert result.exit_code == 1 and result.output == "no bundle written: no kept event matches: nothing to bundle\n"
    assert not out.exists()
    result = runner.invoke(args=["audit", "bundle", "--from", "yesterday", "--to", "2001-01-02", "--out", str(out)])
    assert result.exit_code == 2 and "not an ISO-8601 time" in result.output
