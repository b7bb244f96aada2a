"""Issue 13, item 6: failures of auditing become events (lost writes, a disk nearly full), and retention changes."""
import os
import sqlite3

import pytest
from sqlalchemy import select, update

from app.audit import health
from app.audit.events import AuditWriteError, record, report_lost
from app.audit.integrity import verify
from app.audit.models import AuditEvent
from app.extensions import db
from app.jobs import table as jobs
from tests.support import ADMIN_PASSWORD, make_app, wait_for
from tests.test_disk_full import fill, small_disk  # noqa: F401  (small_disk is a fixture)


def rows(app, action):
    """Return the events of one action, oldest first."""
    with app.app_context():
        found = db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return found


def rename_events(app, old, new):
    """Rename the events table from another connection: every write fails for real until it is put back."""
    path = app.config["SQLALCHEMY_DATABASE_URI"][len("sqlite:///"):]
    with sqlite3.connect(path) as conn:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")


def test_lost_writes_become_one_event_once_the_trail_takes_writes_again(app, caplog):
    with app.app_context():
        record("auth.login", "before", actor="alice")
    rename_events(app, "audit_events", "audit_events_away")
    with app.app_context():
        for i in range(3):
            assert record("auth.login_failed", f"failed {i}", outcome="failure", actor="mallory",
                          details={"password_hint": "hunter2"}, strict=False) is None
        with pytest.raises(AuditWriteError):
            record("device.created", "refused with its action", actor="alice")
        assert report_lost() is None  # still broken: kept for the next try, not counted twice
    rename_events(app, "audit_events_away", "audit_events")
    with app.app_context():
        after = record("auth.logout", "after", actor="alice")
        db.session.remove()
    lost = rows(app, "audit.write_failed")
    assert len(lost) == 1 and lost[0].id == after["id"] + 1  # right behind the first write that worked
    details = lost[0].details
    assert (details["count"], details["refused"]) == (4, 1)
    assert details["actions"] == {"auth.login_failed": 3, "device.created": 1}
    assert details["first_at"] <= details["last_at"] and "no such table" in details["error"]
    assert "INSERT" not in details["error"] and "hunter2" not in str(details) and "hunter2" not in lost[0].message
    assert lost[0].severity == "critical" and lost[0].actor == "system"
    with app.app_context():
        assert report_lost() is None  # reported once
        assert verify().ok  # the ids the failed writes took were rolled back with them: no gap in the chain
    assert any("audit write failed" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_the_maintenance_tick_reports_a_loss_without_any_other_write(app):
    rename_events(app, "audit_events", "audit_events_away")
    with app.app_context():
        record("auth.logout", "lost", actor="bob", strict=False)
    rename_events(app, "audit_events_away", "audit_events")
    with app.app_context():
        row = report_lost()
    assert row["action"] == "audit.write_failed" and row["details"]["count"] == 1
    assert [e.details["actions"] for e in rows(app, "audit.write_failed")] == [{"auth.logout": 1}]


def disk(free_percent, total=1000 * 2**20):
    """Return a usage function that says every disk has this share free."""
    return lambda folder: (int(total * free_percent / 100), total)


def test_storage_low_once_then_recovered_past_the_hysteresis(app):
    app.config.update(STORAGE_WARN_FREE_PERCENT=10, AUDIT_ARCHIVE_DIR=str(app.config["INSTANCE_DIR"]) + "/archive")
    with app.app_context():
        assert health.check_storage(disk(50)) == []
        low = health.check_storage(disk(5))
        assert health.check_storage(disk(4)) == []  # already said
        assert health.check_storage(disk(11)) == []  # not yet clear of the edge
        recovered = health.check_storage(disk(12.5))
    # Every watched folder is on "the same disk" here: one event, not one per folder.
    assert [row["action"] for row in low] == ["storage.low"] and len(recovered) == 1
    assert low[0]["severity"] == "warning" and low[0]["details"]["free_percent"] == 5.0
    assert recovered[0]["action"] == "storage.recovered"


def test_storage_check_off_at_zero_and_watched_folders(app):
    app.config["STORAGE_WARN_FREE_PERCENT"] = 0
    with app.app_context():
        assert health.check_storage(disk(1)) == []
    paths = health.watched_paths({**app.config, "AUDIT_ARCHIVE_DIR": "/srv/archive", "RECORDING": "on"})
    assert set(paths) == {"instance", "database", "recordings", "archive"}
    assert "database" not in health.watched_paths({**app.config, "SQLALCHEMY_DATABASE_URI": "postgresql://x/y"})


def test_retention_on_record_then_changes_are_events(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        first = health.check_retention()
        assert health.check_retention() is None
        app.config.update(AUDIT_RETENTION_DAYS=90, RECORDING_RETENTION_DAYS=30, AUDIT_ARCHIVE_DIR=str(tmp_path))
        changed = health.check_retention()
    assert "retention on record: audit events 7 days" in first["message"] and first["details"]["previous"] is None
    assert changed["severity"] == "warning"
    assert changed["details"]["previous"] == {"audit_days": 7, "recording_days": 7, "archive": False}
    assert "7 → 90 days" in changed["message"] and "archived first" in changed["message"]


def test_a_full_disk_under_gunicorn_is_warned_of_and_lost_writes_reported(live_servers, small_disk):  # noqa: F811
    server = live_servers(DATABASE_URL=f"sqlite:///{small_disk / 'gatehouse.db'}", GATEHOUSE_INSTANCE=str(small_disk),
                          STORAGE_WARN_FREE_PERCENT="20", STORAGE_CHECK_SECONDS="1", RECORDING="off")
    database = small_disk / "gatehouse.db"

    def actions():
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            return [a for (a,) in conn.execute("SELECT action FROM audit_events ORDER BY id")]
        finally:
            conn.close()

    try:
        nearly = small_disk / "nearly"
        stat = os.statvfs(small_disk)
        with open(nearly, "wb") as handle:  # leave about 12% free: under the threshold, still writable
            handle.write(b"\0" * int(stat.f_bavail * stat.f_frsize - 0.12 * stat.f_blocks * stat.f_frsize))
        wait_for(lambda: "storage.low" in actions())
        http = server.login()  # before the disk fills: opening the viewer then writes nothing but its event
        filler = fill(small_disk)
        for _ in range(3):  # the trail cannot take these audit.viewed: lost, and said to be once it can
            http.get(server.url + "/audit/", timeout=10)
        filler.unlink()
        nearly.unlink()
        try:
            wait_for(lambda: "audit.write_failed" in actions() and "storage.recovered" in actions())
        except AssertionError:
            raise AssertionError(f"{actions()}\n{server.log_text()[-3000:]}") from None
    finally:
        server.stop()
    seen = actions()
    assert seen.count("storage.low") == 1 and seen.index("storage.low") < seen.index("audit.write_failed")
    conn = sqlite3.connect(database)
    (details,) = conn.execute("SELECT details FROM audit_events WHERE action = 'audit.write_failed'").fetchone()
    conn.close()
    assert '"audit.viewed": 3' in details and '"count": 3' in details and "database or disk is full" in details
    assert ADMIN_PASSWORD not in details


def test_scheduled_verify_records_the_verdict_and_a_broken_chain_is_critical(app):
    with app.app_context():
        record("auth.login", "one", actor="alice")
        good = health.scheduled_verify()
        db.session.execute(update(AuditEvent).where(AuditEvent.action == "auth.login").values(message="altered"))
        db.session.commit()
        bad = health.scheduled_verify()
    assert good["outcome"] == "success" and good["details"]["scheduled"] is True
    assert bad["outcome"] == "failure" and bad["severity"] == "critical"  # critical events alert by default
    assert "scheduled verify FAILED: BROKEN at event id 2" in bad["message"] and bad["details"]["bad_id"] == 2


def test_the_maintenance_loop_verifies_every_interval_under_a_lease(tmp_path):
    app = make_app(tmp_path, AUDIT_VERIFY_SECONDS=1, AUDIT_CHECKPOINT_SECONDS=3600)
    try:
        jobs.start(app)
        wait_for(lambda: len(rows(app, "audit.verified")) >= 2)
    finally:
        jobs.stop(app)
        with app.app_context():
            db.engine.dispose()
    assert all(row.outcome == "success" and row.actor == "system" for row in rows(app, "audit.verified"))


def test_a_prune_says_how_many_events_never_reached_syslog_and_clears_their_outbox_rows(tmp_path):
    from datetime import timedelta

    from app.audit.models import AuditOutbox
    from app.audit.retention import prune
    from app.dbtypes import now_utc

    app = make_app(tmp_path, SYSLOG_TARGETS=("tcp://127.0.0.1:9",))  # nothing listens, and no sender runs
    with app.app_context():
        for i in range(3):
            record("auth.logout", f"old {i}", actor="old")
        result = prune(now=now_utc() + timedelta(days=8))
        pruned = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.pruned")).one()
        left = db.session.scalars(select(AuditOutbox.event_id)).all()
    assert result.count >= 4 and pruned.details["undelivered"] == result.count
    assert "never delivered to syslog" in pruned.message
    assert left and min(left) > result.anchor_id  # only rows of kept events (the prune's own) wait
