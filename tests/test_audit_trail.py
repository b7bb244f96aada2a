"""The audit trail: events from real endpoints, client IP, retention, tamper evidence."""
import gzip
import json
import multiprocessing
import os
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from app import leases
from app.audit import events, retention
from app.audit.events import record
from app.audit.integrity import verify
from app.audit.models import AuditChainHead, AuditEvent, AuditOutbox
from app.extensions import db
from tests.support import ADMIN_PASSWORD, PG_URL, csrf_from, fresh_postgres, make_app


def rows(app, **where):
    """Return the audit events (oldest first), optionally filtered by column values."""
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.id)
        for key, value in where.items():
            query = query.where(getattr(AuditEvent, key) == value)
        result = db.session.scalars(query).all()
        db.session.expunge_all()
        return result


def test_login_logout_events(app, client, auth):
    auth.login(headers={"User-Agent": "pytest-agent/1.0"})
    auth.logout()
    login, logout = rows(app, action="auth.login")[-1], rows(app, action="auth.logout")[-1]
    assert (login.actor, login.outcome, login.message, login.severity) == ("admin", "success", "user logged in", "info")
    assert login.user_agent == "pytest-agent/1.0" and login.source_ip == "127.0.0.1"
    assert login.occurred_at.tzinfo == timezone.utc
    assert abs(datetime.now(timezone.utc) - login.occurred_at) < timedelta(seconds=30)
    assert len(login.request_id) == 32
    assert (logout.actor, logout.message) == ("admin", "user logged out")


def test_failed_logins_record_the_name_tried_and_answer_alike(app, client, auth):
    unknown = auth.login("mallory", "whatever-password")
    wrong = auth.login("admin", "wrong-password")
    assert unknown.status_code == wrong.status_code == 401
    strip = lambda body: body.replace(csrf_from(body.decode()).encode(), b"")  # noqa: E731
    assert strip(unknown.data).replace(b"mallory", b"admin") == strip(wrong.data)
    failed = rows(app, action="auth.login_failed")
    assert [(e.actor, e.user_id is None, e.details["reason"], e.severity) for e in failed] == [
        ("mallory", True, "unknown_user", "warning"), ("admin", False, "wrong_password", "warning")]
    assert all("whatever" not in json.dumps(e.details) and "wrong-password" not in e.message for e in failed)


def test_password_change_events(app, client, auth):
    auth.login()
    token = auth.csrf("/account/password")
    client.post("/account/password", data={"current": "nope-nope-nope", "new": "x" * 20, "confirm": "x" * 20,
                                           "csrf_token": token})
    client.post("/account/password", data={"current": ADMIN_PASSWORD, "new": "y" * 20, "confirm": "y" * 20,
                                           "csrf_token": token})
    failed, = rows(app, action="auth.password_change_failed")
    changed, = rows(app, action="auth.password_changed")
    assert failed.details == {"reason": "wrong_current_password"} and failed.outcome == "failure"
    assert changed.actor == "admin" and changed.outcome == "success"
    dumped = json.dumps([e.details for e in rows(app)]) + " ".join(e.message for e in rows(app))
    assert "y" * 20 not in dumped and "x" * 20 not in dumped and ADMIN_PASSWORD not in dumped


def test_device_events_name_fields_never_values(app, client, auth):
    auth.login()
    token = auth.csrf("/")
    client.post("/devices/", data={"name": "web1", "host": "10.0.0.5", "port": "22", "username": "ops",
                                   "auth_type": "password", "password": "device-secret-1", "csrf_token": token})
    device_id = db_device_id(app, "web1")
    client.post(f"/devices/{device_id}", data={"name": "web1", "host": "10.0.0.6", "port": "2222", "username": "ops",
                                               "auth_type": "password", "password": "device-secret-2",
                                               "csrf_token": token})
    client.post(f"/devices/{device_id}/delete", data={"csrf_token": token})
    created, = rows(app, action="device.created")
    updated, = rows(app, action="device.updated")
    deleted, = rows(app, action="device.deleted")
    assert created.message == "created device web1 (10.0.0.5:22)" and created.target == "web1 (10.0.0.5:22)"
    assert sorted(updated.details["fields"]) == ["credential", "host", "port"]
    assert deleted.target == "web1 (10.0.0.6:2222)"
    assert "device-secret" not in json.dumps([e.details for e in rows(app)])


def db_device_id(app, name):
    from app.devices.models import Device

    with app.app_context():
        return db.session.scalar(select(Device.id).filter_by(name=name))


# --- real client IP -------------------------------------------------------------------------

@pytest.mark.parametrize("hops,peer,forwarded,expected", [
    (0, "127.0.0.1", "203.0.113.9", "127.0.0.1"),  # no proxy trusted: the header is ignored
    (1, "127.0.0.1", "198.51.100.7", "198.51.100.7"),
    (1, "127.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # spoofed leftmost entry is not taken
    (2, "127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.1.1", "198.51.100.7"),
    (2, "127.0.0.1", "198.51.100.7", "127.0.0.1"),  # fewer entries than hops: the direct peer
    (1, "::1", "2001:db8::42", "2001:db8::42"),
    (1, "127.0.0.1", "<script>alert(1)</script>", "127.0.0.1"),  # garbage: the direct peer
    (1, "127.0.0.1", "", "127.0.0.1"),
])
def test_client_ip_behind_proxies(tmp_path, hops, peer, forwarded, expected):
    app = make_app(tmp_path, TRUSTED_PROXY_HOPS=hops)
    client = app.test_client()
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    env = {"REMOTE_ADDR": peer}
    token = csrf_from(client.get("/login", environ_base=env).get_data(as_text=True))
    client.post("/login", data={"username": "admin", "password": "wrong-password", "csrf_token": token},
                headers=headers, environ_base=env)
    event, = rows(app, action="auth.login_failed")
    assert event.source_ip == expected


def test_forwarded_proto_marks_cookie_secure_only_when_trusted(tmp_path):
    trusted = make_app(tmp_path / "a", TRUSTED_PROXY_HOPS=1).test_client()
    ignored = make_app(tmp_path / "b").test_client()
    headers = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    assert "Secure" in trusted.get("/login", headers=headers).headers["Set-Cookie"]
    assert "Secure" not in ignored.get("/login", headers=headers).headers["Set-Cookie"]


# --- the chain --------------------------------------------------------------------------------

def fill(app, n, start=None, step=timedelta(minutes=1), monkeypatch=None):
    """Record n events, the first at start and each step later (the clock is patched)."""
    with app.app_context():
        for i in range(n):
            if start is not None:
                moment = start + i * step
                monkeypatch.setattr(events, "now_utc", lambda moment=moment: moment)
            record("auth.login_failed", f"failed log in as user{i}", outcome="failure", actor=f"user{i}",
                   details={"reason": "wrong_password", "n": i})
    if monkeypatch:
        monkeypatch.undo()


def test_verify_ok_and_head(app):
    fill(app, 20)
    with app.app_context():
        verdict = verify(batch_size=7)
        head = db.session.get(AuditChainHead, 1)
    assert verdict.ok and verdict.count == 21  # 20 + the first admin's user.created
    assert verdict.head_id == head.last_id == 21 and verdict.head_hash == head.last_hash


def tamper(app, statement):
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(statement)
        return verify()


def test_verify_detects_edited_row(app):
    fill(app, 10)
    verdict = tamper(app, update(AuditEvent).where(AuditEvent.id == 5).values(source_ip="10.9.9.9"))
    assert not verdict.ok and verdict.bad_id == 5 and "altered" in verdict.problem


def test_verify_detects_edited_details(app):
    fill(app, 10)
    verdict = tamper(app, update(AuditEvent).where(AuditEvent.id == 7).values(details={"reason": "nothing"}))
    assert not verdict.ok and verdict.bad_id == 7


def test_verify_detects_deleted_middle_row(app):
    fill(app, 10)
    verdict = tamper(app, AuditEvent.__table__.delete().where(AuditEvent.id == 6))
    assert not verdict.ok and verdict.bad_id == 7 and "missing" in verdict.problem


def test_verify_detects_deleted_newest_and_oldest_rows(app):
    fill(app, 10)
    newest = tamper(app, AuditEvent.__table__.delete().where(AuditEvent.id == 11))
    assert not newest.ok and newest.bad_id == 11 and "newest" in newest.problem
    oldest = tamper(app, AuditEvent.__table__.delete().where(AuditEvent.id <= 2))
    assert not oldest.ok and oldest.bad_id == 3 and "oldest" in oldest.problem


def test_verify_detects_reordered_rows(app):
    fill(app, 10)
    with app.app_context():
        with db.engine.begin() as conn:  # swap rows 4 and 5 by their ids
            table = AuditEvent.__table__
            conn.execute(table.update().where(table.c.id == 4).values(id=-4))
            conn.execute(table.update().where(table.c.id == 5).values(id=4))
            conn.execute(table.update().where(table.c.id == -4).values(id=5))
        verdict = verify()
    assert not verdict.ok and verdict.bad_id == 4


def test_verify_detects_forged_row_with_recomputed_hash(app):
    """Recomputing one row's hash after editing it still breaks the link of the row after it."""
    fill(app, 10)
    with app.app_context():
        row = db.session.get(AuditEvent, 5)
        data = {c.name: getattr(row, c.name) for c in AuditEvent.__table__.columns}
        data["message"] = "nothing to see here"
        forged = events.chain_hash(data["prev_hash"], data)
        db.session.execute(update(AuditEvent).where(AuditEvent.id == 5).values(message=data["message"], hash=forged))
        db.session.commit()
        verdict = verify()
    assert not verdict.ok and verdict.bad_id == 6


def test_cli_verify_and_prune(app, runner):
    fill(app, 3)
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and result.output.startswith("OK: 4 events, head id 4")
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.id == 2).values(actor="someone-else"))
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and "BROKEN at event id 2" in result.output
    result = runner.invoke(args=["audit", "prune", "--days", "1"])
    assert result.exit_code == 0 and result.output.startswith("pruned 0 events older than")


# --- retention --------------------------------------------------------------------------------

def check_retention(app, monkeypatch, tmp_path):
    # "Now" lies 12 days ahead, so the first admin's event (real time) is the oldest, as ids and time agree.
    now = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=12)
    # 12 events from 11 days before "now", one every 18 hours: the first six are older than the 7-day cut-off.
    fill(app, 12, start=now - timedelta(days=11), step=timedelta(hours=18), monkeypatch=monkeypatch)
    cutoff = now - timedelta(days=7)
    with app.app_context():
        before = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        expired = [e.id for e in before if e.occurred_at < cutoff]
        kept = [e.id for e in before if e.occurred_at >= cutoff]
        result = retention.prune(now=now, batch_size=2, archive_dir=str(tmp_path / "archive"))
        after = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        verdict = verify()
    assert len(expired) == 7 and result.count == len(expired) and result.cutoff == cutoff
    remaining = [e.id for e in after]
    assert not set(expired) & set(remaining) and set(kept) <= set(remaining)
    pruned_event = [e for e in after if e.action == "audit.pruned"][-1]
    assert pruned_event.details["count"] == len(expired) and pruned_event.details["anchor_id"] == max(expired)
    assert pruned_event.details["cutoff"] == cutoff.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert verdict.ok, str(verdict)
    archived = []
    for path in sorted((tmp_path / "archive").glob("audit-*.jsonl.gz")):
        with gzip.open(path, "rt") as handle:
            archived += [json.loads(line) for line in handle]
    assert [row["id"] for row in archived] == expired
    assert all(row["occurred_at"].endswith("Z") and len(row["hash"]) == 64 for row in archived)


def test_retention_on_sqlite(app, monkeypatch, tmp_path):
    check_retention(app, monkeypatch, tmp_path)


def test_retention_on_postgresql(pg_app, monkeypatch, tmp_path):
    check_retention(pg_app, monkeypatch, tmp_path)


def test_prune_nothing_to_do_writes_nothing(app):
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(AuditEvent))
        assert retention.prune().count == 0
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == count


def test_prune_lease_has_one_holder(app):
    with app.app_context():
        assert leases.take_lease("prune", 60)
        assert leases.take_lease("prune", 60)  # the holder may renew
        with db.engine.begin() as conn:
            conn.execute(update(leases.Lease).values(holder="elsewhere:1"))
        assert not leases.take_lease("prune", 60)


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_retention_setting_is_validated(value, monkeypatch):
    from config import Config, ConfigError

    monkeypatch.setenv("AUDIT_RETENTION_DAYS", value)
    with pytest.raises(ConfigError, match="AUDIT_RETENTION_DAYS"):
        Config()


# --- concurrent writers -------------------------------------------------------------------------

def _writer(database_url, instance, count):
    """Write count events from 5 threads of a fresh process."""
    import threading

    app = create_app_for(database_url, instance)
    errors = []

    def work(n):
        with app.app_context():
            for i in range(n):
                try:
                    record("audit.viewed", f"pid {os.getpid()} event {i}", actor="writer")
                except Exception as exc:  # collected and reported by the parent
                    errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(count // 5,)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{len(errors)} writes failed: {errors[:3]}")


def create_app_for(database_url, instance):
    from app import create_app

    return create_app({"TESTING": True, "SECRET_KEY": "s" * 40, "SQLALCHEMY_DATABASE_URI": database_url,
                       "INSTANCE_DIR": instance})


def run_writers(app, database_url, tmp_path, processes=4, each=250):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(database_url, str(tmp_path), each)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0] * processes
    with app.app_context():
        verdict = verify()
        written = db.session.scalar(select(func.count()).where(AuditEvent.action == "audit.viewed"))
        ids = db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)).all()
    assert written == processes * each
    assert ids == list(range(1, len(ids) + 1))
    assert verdict.ok and verdict.count == len(ids), str(verdict)


def test_concurrent_writers_one_chain_postgresql(tmp_path):
    url = fresh_postgres(PG_URL)
    app = make_app(tmp_path, database_url=url)
    run_writers(app, url, tmp_path)
    with app.app_context():
        db.engine.dispose()


def test_concurrent_writers_one_chain_sqlite(app, tmp_path):
    run_writers(app, app.config["SQLALCHEMY_DATABASE_URI"], tmp_path, processes=4, each=50)


def test_failed_write_on_postgresql_leaves_nothing_and_a_usable_pool(tmp_path):
    """A write refused inside the pipelined statement and COMMIT writes no event, no outbox row, and the next works."""
    app = make_app(tmp_path, database_url=fresh_postgres(PG_URL))
    app.config["SYSLOG_TARGETS"] = ("tcp://127.0.0.1:9",)  # set after the start: no sender drains the outbox
    with app.app_context():
        record("audit.viewed", "first")
        last = db.session.scalar(select(AuditChainHead.last_id))
        db.session.execute(update(AuditChainHead).values(last_id=last - 1))  # the next id is taken
        db.session.commit()
        with pytest.raises(events.AuditWriteError, match="duplicate key"):
            record("audit.viewed", "collides")
        db.session.execute(update(AuditChainHead).values(last_id=last))
        db.session.commit()
        record("audit.viewed", "after")  # then audit.write_failed, for the one that collided
        messages = db.session.scalars(select(AuditEvent.message).order_by(AuditEvent.id)).all()
        queued = db.session.scalar(select(func.count()).select_from(AuditOutbox))
        assert verify().ok
        db.engine.dispose()
    assert "collides" not in messages and messages[-2] == "after" and messages[-1].startswith("1 audit events")
    assert queued == 3  # first, after and audit.write_failed: the refused one queued nothing


def test_failed_audit_write_refuses_login_and_is_logged(app, client, auth, caplog):
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(AuditChainHead.__table__.delete())  # no head row: every write fails
    response = auth.login()
    assert response.status_code == 503
    assert b"audit trail cannot be written" in response.data
    assert client.get("/").status_code == 302
    assert any(r.levelname == "ERROR" and "audit write failed" in r.getMessage() for r in caplog.records)


def test_record_rejects_unknown_action(app):
    with app.app_context(), pytest.raises(ValueError):
        record("auth.teleported", "nope")


def test_details_never_keep_secret_named_fields(app):
    with app.app_context():
        record("device.updated", "x", details={"password": "hunter2", "nested": {"private_key": "k"}, "fields": ["a"]})
    event = rows(app, action="device.updated")[-1]
    assert event.details == {"password": "[redacted]", "nested": {"private_key": "[redacted]"}, "fields": ["a"]}
