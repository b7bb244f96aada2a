"""Security summary and review response time on a large trail (SQLite; PostgreSQL with --pg).

Run: .venv/bin/python -m bench.audit_summary [--events 200000] [--attack 20000] [--repeat 20] [--pg URL]
The events are spread over 7 days like bench.audit_viewer's (every action code, 50 users, 2 500 addresses);
--attack more failed log-ins land in the last 24 h from 500 addresses against 2 000 names. Each figure is
GET /audit/summary (the polled partial) or GET /audit/?tab=review (the whole trail unreviewed, then the
last day only) through the real view and template, in-process with Flask's test client, as the admin.
"""
import argparse
import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from app.audit.events import record
from app.auth.admin import ensure_first_admin
from app.audit.models import AuditChainHead, AuditEvent
from app.dbtypes import now_utc
from app.extensions import db
from bench.audit import make_app
from bench.audit_viewer import fill
from tests.support import ADMIN_PASSWORD, AuthActions


def attack(app, count):
    """Bulk-insert count failed log-ins over the last 24 h (filler hashes: this measures reads)."""
    rng = random.Random(13)
    start = now_utc() - timedelta(hours=23)
    with app.app_context():
        first = db.session.get(AuditChainHead, 1).last_id + 1
        rows = [{"id": first + i, "occurred_at": start + timedelta(hours=23) * i / count,
                 "actor": f"guess{rng.randrange(2000)}", "user_id": None, "action": "auth.login_failed",
                 "outcome": "failure", "severity": "warning", "message": "failed log in",
                 "source_ip": f"10.9.{rng.randrange(20)}.{rng.randrange(25)}", "user_agent": "bench/1.0",
                 "request_id": None, "target": None, "session_id": None, "details": {"reason": "unknown_user"},
                 "prev_hash": "0" * 64, "hash": "0" * 64} for i in range(count)]
        for at in range(0, count, 20000):
            db.session.execute(sa.insert(AuditEvent), rows[at:at + 20000])
        db.session.execute(sa.update(AuditChainHead).values(last_id=first + count - 1))
        db.session.commit()


def timed(client, url, repeat):
    """Return (p50 ms, max ms) of GET url."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.status_code
    return statistics.median(times), max(times)


def mark_all_but_last_day(app):
    """Record a review up to the last event older than 24 h, as a daily review leaves it."""
    with app.app_context():
        to_id = db.session.scalar(sa.select(sa.func.max(AuditEvent.id))
                                  .where(AuditEvent.occurred_at < now_utc() - timedelta(days=1)))
        record("audit.reviewed", "bench review", actor="admin", details={"from_id": 1, "to_id": to_id})


def run(name, url, folder, events, extra, repeat):
    """Fill one database and print the figures."""
    app = make_app(url, str(folder))
    app.config.update(ADMIN_USER="admin", ADMIN_PASSWORD=ADMIN_PASSWORD)
    with app.app_context():
        ensure_first_admin(app)
    began = time.perf_counter()
    fill(app, events)
    attack(app, extra)
    print(f"{name}: {events + extra} events written in {time.perf_counter() - began:.0f} s")
    client = app.test_client()
    assert AuthActions(client).login("admin", ADMIN_PASSWORD).status_code == 302
    for label, path in (("summary (polled partial)", "/audit/summary"),
                        ("review, whole trail unreviewed", "/audit/?tab=review")):
        p50, worst = timed(client, path, repeat if "summary" in path else max(3, repeat // 4))
        print(f"  {label:34} p50 {p50:7.1f} ms   max {worst:7.1f} ms")
    mark_all_but_last_day(app)
    p50, worst = timed(client, "/audit/?tab=review", repeat)
    print(f"  {'review, last day unreviewed':34} p50 {p50:7.1f} ms   max {worst:7.1f} ms")
    with app.app_context():
        db.engine.dispose()


def main():
    """Fill each database and print the summary's and the review's response times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--attack", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--pg", help="also this PostgreSQL database (emptied first; never a shared one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run("SQLite", f"sqlite:///{Path(folder) / 'bench.db'}", Path(folder), args.events, args.attack, args.repeat)
        if args.pg:
            run("PostgreSQL", args.pg, Path(folder), args.events, args.attack, args.repeat)


if __name__ == "__main__":
    main()
