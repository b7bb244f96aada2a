"""Audit viewer response time on a table of 1 000 000 events, SQLite and PostgreSQL, before and after the search index.

Run: .venv/bin/python -m bench.audit_viewer [--events 1000000] [--repeat 20] [--skip-pg] [--skip-sqlite]
Each figure is the time of GET /audit/rows?<filter> through the real view (query, count and
template), measured in-process with Flask's test client, as the logged-in admin. The free-text
filters are measured twice: on the plain scan (the database migrated to 0014, without the index)
and after migration 0015_search_index has built it (the time that took is printed too). PostgreSQL
runs in a database of its own, named for the run on the server of BENCH_PG (default: 127.0.0.1:5432),
dropped at the end.
"""
import argparse
import os
import random
import secrets
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

import flask_migrate
import sqlalchemy as sa

from app.audit import query as viewer_query
from app.audit import search_index
from app.audit.catalogue import CATALOGUE
from app.audit.models import AuditChainHead, AuditEvent
from app.dbtypes import now_utc
from app.extensions import db
from bench.audit import make_app
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
# The free text as people type it: a device's name (1 % of events), a word in no event, a two-character term (no
# trigram in it: the plain scan whatever the index), and wildcards and quotes searched literally.
TEXT_QUERIES = [
    ("free text", "q=web42"),
    ("free text, no match", "q=zebra-crossing"),
    ("free text, 2 characters", "q=b4"),
    ("free text with % and \"", "q=10.0.0.7%25%22"),
    ("free text + one user", "q=web42&user=user7"),
]
BEFORE = "0014_resume_and_files"  # the revision before the index
SERVER = os.environ.get("BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


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


def measure(app, repeat, queries=QUERIES):
    """Return {label: (p50 ms, p95 ms, total)} for each query."""
    client = app.test_client()
    assert AuthActions(client).login("admin", ADMIN_PASSWORD).status_code == 302
    day_ago = (now_utc() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    results = {}
    for label, query in queries:
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


def own_database(create, name):
    """Create (or drop) the run's own PostgreSQL database on the BENCH_PG server; return its URL."""
    engine = sa.create_engine(SERVER, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if create:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return sa.make_url(SERVER).set(database=name).render_as_string(hide_password=False)


def prepare(url, folder, events):
    """Make the app on a database at the revision before the index, with the first admin and events in it."""
    app = make_app(url, folder)
    # A password alone logs the admin in here (as in the tests): the second factor is not what this measures.
    app.config.update(ADMIN_USER="admin", ADMIN_PASSWORD=ADMIN_PASSWORD, REQUIRE_2FA="off")
    with app.app_context():
        from app.auth.admin import ensure_first_admin

        flask_migrate.downgrade(revision=BEFORE)
        ensure_first_admin(app)
    started = time.perf_counter()
    fill(app, events)
    return app, time.perf_counter() - started


def build_index(app):
    """Migrate to head (building the search index over the rows there); return the seconds it took."""
    started = time.perf_counter()
    with app.app_context():
        flask_migrate.upgrade()
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("ANALYZE audit_events"))
    return time.perf_counter() - started


def report(title, results, before=None):
    """Print one table of figures (with the plain scan's beside them when given)."""
    print(f"\n{title}")
    print(f"{'filter':<28} {'matches':>16} {'p50 ms':>8} {'p95 ms':>8}" + ("  plain scan p50/p95 ms" if before else ""))
    for label, (p50, p95, total) in results.items():
        line = f"{label:<28} {total:>16} {p50:>8.1f} {p95:>8.1f}"
        if before and label in before:
            line += f"  {before[label][0]:>10.1f} / {before[label][1]:.1f}"
        print(line, flush=True)


def bench_one(name, url, folder, args):
    """Fill one database, then measure the free text on the plain scan, build the index and measure everything."""
    app, fill_s = prepare(url, folder, args.events)
    print(f"\n{name}: {args.events} events inserted in {fill_s:.0f} s", flush=True)
    # At 0014 there is no index to ask: the viewer's query is the plain ILIKE scan, as before the index.
    # Nor were counts bounded there (app.audit.query.COUNT_BOUND, TEXT_COUNT_BOUND): they counted every match.
    with mock.patch.dict(search_index.FTS_TABLES, clear=True), mock.patch.object(viewer_query, "TEXT_COUNT_BOUND", 10**9), \
            mock.patch.object(viewer_query, "COUNT_BOUND", 10**9):
        before = measure(app, args.repeat, TEXT_QUERIES)
    report(f"{name}, plain scan (revision {BEFORE})", before)
    print(f"\n{name}: search index built in {build_index(app):.1f} s", flush=True)
    after = measure(app, args.repeat, QUERIES + [query for query in TEXT_QUERIES if query not in QUERIES])
    report(f"{name}, with the search index", after, before)
    with app.app_context():
        db.engine.dispose()
    return before, after


def run(args):
    """Measure each database args names; return {database name: (plain scan figures, indexed figures)}."""
    found = {}
    with tempfile.TemporaryDirectory() as folder:
        if not args.skip_sqlite:
            found["SQLite"] = bench_one("SQLite", f"sqlite:///{Path(folder) / 'viewer.db'}", folder, args)
        if not args.skip_pg:
            name = f"bench_viewer_{secrets.token_hex(4)}"
            try:
                found["PostgreSQL"] = bench_one("PostgreSQL", own_database(True, name), folder, args)
            finally:
                own_database(False, name)
    return found


def main():
    """Fill each database and print the viewer's response times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
