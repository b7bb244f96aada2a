"""Audit viewer response time on a table of 1 000 000 events, SQLite and PostgreSQL.

Run: .venv/bin/python -m bench.audit_viewer [--events 1000000] [--repeat 20] [--skip-pg]
Each figure is the time of GET /audit/rows?<filter> through the real view (query, count and
template), measured in-process with Flask's test client, as the logged-in admin.
"""
import argparse
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from app.audit.events import CATALOGUE
from app.audit.models import AuditChainHead, AuditEvent
from app.dbtypes import now_utc
from app.extensions import db
from bench.audit import PG_URL, make_app
from tests.support import ADMIN_PASSWORD, AuthActions

QUERIES = [
    ("newest page, no filter", ""),
    ("one action", "action=auth.login_failed"),
    ("action group + last 24 h", "action=sessions&since={day_ago}"),
    ("one user", "user=user7"),
    ("one source IP", "ip=10.0.7.7"),
    ("failures only", "outcome=failure"),
    ("user + action + outcome", "user=user3&action=session.ended&outcome=success"),
    ("free text", "q=web42"),
    ("page 100 of a filter", "action=device.created&page=100"),
]


def fill(app, count):
    """Bulk-insert count events spread over the last 7 days (filler hashes: this measures reads)."""
    actions = list(CATALOGUE)
    rng = random.Random(7)
    start = now_utc() - timedelta(days=7)
    step = timedelta(days=7) / count
    with app.app_context():
        first = db.session.get(AuditChainHead, 1).last_id + 1
        batch = []
        for i in range(count):
            action = actions[rng.randrange(len(actions))]
            target = f"web{rng.randrange(100)} (10.0.0.{rng.randrange(250)}:22)"
            batch.append({
                "id": first + i, "occurred_at": start + step * i, "actor": f"user{rng.randrange(50)}", "user_id": None,
                "action": action, "outcome": "failure" if rng.random() < 0.1 else "success", "severity": "info",
                "message": f"{CATALOGUE[action][0].lower()} {target}", "source_ip": f"10.0.{rng.randrange(50)}.{rng.randrange(50)}",
                "user_agent": "bench/1.0", "request_id": None, "target": target, "session_id": None,
                "details": {}, "prev_hash": "0" * 64, "hash": "0" * 64,
            })
            if len(batch) == 20000:
                db.session.execute(sa.insert(AuditEvent), batch)
                db.session.commit()
                batch = []
        if batch:
            db.session.execute(sa.insert(AuditEvent), batch)
        db.session.execute(sa.update(AuditChainHead).values(last_id=first + count - 1))
        db.session.commit()
        # The steady state of a live table: statistics fresh and (PostgreSQL) the visibility map
        # set by autovacuum, so counts can use index-only scans.
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE audit_events"))
        else:
            db.session.execute(sa.text("ANALYZE"))
            db.session.commit()


def measure(app, repeat):
    """Return {label: (p50 ms, p95 ms, total)} for each query."""
    client = app.test_client()
    assert AuthActions(client).login("admin", ADMIN_PASSWORD).status_code == 302
    day_ago = (now_utc() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    results = {}
    for label, query in QUERIES:
        url = "/audit/rows?" + query.format(day_ago=day_ago)
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.data[:300]
        samples.sort()
        total = response.get_data(as_text=True).split(" event", 1)[0].rsplit(">", 1)[-1].strip()
        results[label] = (samples[len(samples) // 2], samples[int(len(samples) * 0.95)], total)
    return results


def main():
    """Fill each database and print the viewer's response times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    targets = ([] if args.skip_sqlite else [("SQLite", None)]) + ([] if args.skip_pg else [("PostgreSQL", PG_URL)])
    with tempfile.TemporaryDirectory() as folder:
        for name, url in targets:
            app = make_app(url or f"sqlite:///{Path(folder) / 'viewer.db'}", folder)
            app.config.update(ADMIN_USER="admin", ADMIN_PASSWORD=ADMIN_PASSWORD)
            with app.app_context():
                from app.auth.admin import ensure_first_admin

                ensure_first_admin(app)
            started = time.perf_counter()
            fill(app, args.events)
            print(f"\n{name}: {args.events} events inserted in {time.perf_counter() - started:.0f} s")
            print(f"{'filter':<28} {'matches':>9} {'p50 ms':>8} {'p95 ms':>8}")
            for label, (p50, p95, total) in measure(app, args.repeat).items():
                print(f"{label:<28} {total:>9} {p50:>8.1f} {p95:>8.1f}", flush=True)
            with app.app_context():
                db.engine.dispose()


if __name__ == "__main__":
    main()
