"""Issue 10: pruning never launders tampering, verify never cries wolf, bad input is a clear 4xx or verdict."""
import multiprocessing
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from app import create_app
from app.audit import events, retention
from app.audit.events import record
from app.audit.integrity import verify
from app.audit.models import AuditEvent
from app.extensions import db
from tests.support import SECRET_KEY, AuthActions, csrf_from

HUGE = "99999999999999999999999"


def fill(app, n, start=None, step=timedelta(hours=18), monkeypatch=None):
    """Record n events, from start one step apart when given (the clock is patched)."""
    with app.app_context():
        for i in range(n):
            if start is not None:
                monkeypatch.setattr(events, "now_utc", lambda moment=start + i * step: moment)
            record("auth.login_failed", f"failed log in as user{i}", outcome="failure", actor=f"user{i}",
                   details={"reason": "wrong_password", "n": i})
    if monkeypatch:
        monkeypatch.undo()


def execute(app, statement):
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(statement)


def count_rows(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEvent))


def refusals(app):
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.pruned",
                                                           AuditEvent.outcome == "failure")).all()
        return [(e.severity, e.details["bad_id"]) for e in rows]


# --- item 4: a prune never launders a tampered row ------------------------------------------------

def test_prune_refuses_backdated_tampered_rows(any_app):
    """Edit row 5, back-date rows 1..5 so they expire: the prune refuses and the break stays visible."""
    fill(any_app, 10)
    execute(any_app, update(AuditEvent).where(AuditEvent.id == 5).values(message="nothing happened"))
    old = datetime.now(timezone.utc) - timedelta(days=30)
    execute(any_app, update(AuditEvent).where(AuditEvent.id <= 5).values(occurred_at=old))
    before = count_rows(any_app)
    with any_app.app_context():
        result = retention.prune()
        verdict = verify()
    assert result.count == 0 and result.refused and "BROKEN at event id 1" in result.refused
    assert count_rows(any_app) == before + 1  # nothing deleted, the refusal recorded
    assert refusals(any_app) == [("critical", 1)]
    assert not verdict.ok and verdict.bad_id == 1


def test_prune_verifies_from_the_last_anchor(any_app, monkeypatch):
    """After a clean prune, a row edited between the anchor and the new cut-off stops the next prune."""
    now = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=12)
    fill(any_app, 12, start=now - timedelta(days=11), monkeypatch=monkeypatch)
    with any_app.app_context():
        first = retention.prune(now=now - timedelta(days=2))
    assert first.count == 4 and first.anchor_id == 4 and not first.refused
    execute(any_app, update(AuditEvent).where(AuditEvent.id == 6).values(actor="someone-else"))
    with any_app.app_context():
        second = retention.prune(now=now)
        verdict = verify()
    assert second.count == 0 and "BROKEN at event id 6" in second.refused
    assert refusals(any_app) == [("critical", 6)]
    assert not verdict.ok and verdict.bad_id == 6


def test_cli_prune_refusal_exits_1(app):
    fill(app, 3)
    old = datetime.now(timezone.utc) - timedelta(days=30)
    execute(app, update(AuditEvent).where(AuditEvent.id <= 2).values(occurred_at=old))
    result = app.test_cli_runner().invoke(args=["audit", "prune"])
    assert result.exit_code == 1 and result.output.startswith("REFUSED:") and "event id 1" in result.output


# --- item 5: verify under concurrent writers -------------------------------------------------------

def _writer(database_url, instance, stop_path):
    """Write events until the stop file appears (at most 20 000, at most 120 s)."""
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET_KEY, "SQLALCHEMY_DATABASE_URI": database_url,
                      "INSTANCE_DIR": instance})
    deadline = time.monotonic() + 120
    with app.app_context():
        for i in range(20000):
            if os.path.exists(stop_path) or time.monotonic() > deadline:
                break
            record("audit.viewed", f"pid {os.getpid()} event {i}", actor="writer")


def test_verify_under_concurrent_writers(any_app, tmp_path):
    """Twenty verifications while two processes append never report a break."""
    url, stop = any_app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "stop"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(url, str(tmp_path), str(stop))) for _ in range(2)]
    for writer in writers:
        writer.start()
    try:
        deadline = time.monotonic() + 60
        while count_rows(any_app) < 50 and time.monotonic() < deadline:  # both writers are running
            time.sleep(0.1)
        with any_app.app_context():
            verdicts = [verify(batch_size=40) for _ in range(20)]
        grown = count_rows(any_app)
    finally:
        Path(stop).touch()
        for writer in writers:
            writer.join(60)
    assert [w.exitcode for w in writers] == [0, 0]
    print("verified", [v.count for v in verdicts], "rows at the end", grown)
    assert [str(v) for v in verdicts if not v.ok] == []
    assert verdicts[-1].count > verdicts[0].count and grown > verdicts[0].count  # it did run while rows arrived
    with any_app.app_context():
        assert verify().ok


# --- item 8: bad input answers a clear 4xx ----------------------------------------------------------

@pytest.mark.parametrize("query", [
    "page=\u00b2", "size=\u00b2", "page=\u0663", "since=0001-01-01T00:00:00%2B01:00",
    "until=9999-12-31T23:59:59-05:00", "q=a%00b", "user=ad%00min",
])
@pytest.mark.parametrize("path", ["/audit/", "/audit/rows", "/audit/panel", "/audit/export.csv"])
def test_bad_filters_answer_422(any_app, path, query):
    client = any_app.test_client()
    AuthActions(client).login()
    response = client.get(f"{path}?{query}")
    assert response.status_code == 422, response.data[:300]
    assert b"must be" in response.data or b"is not" in response.data or b"may not" in response.data


def _routes_with_int(app):
    """Return (method, path) for every route with an <int:> part, that part given a huge number."""
    found = []
    for rule in app.url_map.iter_rules():
        if "int" in str(rule.rule):
            path = rule.rule
            for name, converter in rule._converters.items():
                path = path.replace(f"<int:{name}>", HUGE)
            found += [(method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return found


def test_huge_ids_in_every_int_route_answer_404(any_app):
    client = any_app.test_client()
    AuthActions(client).login()
    token = csrf_from(client.get("/").get_data(as_text=True))
    routes = _routes_with_int(any_app)
    assert len(routes) >= 7 and any(path.endswith("/ws") for _, path in routes)
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    for method, path in routes:
        headers = {"Origin": "http://localhost", **(upgrade if path.endswith("/ws") else {})}
        response = client.open(path, method=method, data={"csrf_token": token} if method == "POST" else None,
                               headers=headers)
        assert response.status_code == 404, (method, path, response.status_code)


def _plant_bad_row(app, column, raw):
    """Write a raw value into row 3 behind the ORM's back (as a hand edit of the database would)."""
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text(f"UPDATE audit_events SET {column} = :raw WHERE id = 3"), {"raw": raw})


@pytest.mark.parametrize("column, raw, problem", [
    ("details", "{not json", "details are not valid JSON"),
    ("occurred_at", "yesterday at noon", "is not a date"),
])
def test_verify_names_undecodable_rows(app, column, raw, problem):
    """SQLite stores whatever it is given; PostgreSQL's types refuse such values at the door."""
    fill(app, 5)
    _plant_bad_row(app, column, raw)
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and isinstance(result.exception, (SystemExit, type(None))), result.output
    assert f"BROKEN at event id 3: its {column if column == 'details' else 'time'}" in result.output
    assert problem in result.output
