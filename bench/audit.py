"""Audit trail costs: record() per event, verify of 100 000 events, prune of 100 000 expired events.

Run: .venv/bin/python -m bench.audit [--events 100000] [--records 2000] [--skip-pg]
SQLite in a temporary folder and PostgreSQL in a database of its own on BENCH_PG's server (127.0.0.1:5432 unless
set), created and dropped. Several writer processes on one chain: bench.audit_writers.
"""
import argparse
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import flask_migrate
import sqlalchemy as sa

from app import create_app
from app.audit.catalogue import CATALOGUE
from app.audit.events import chain_hash, record
from app.audit.integrity import verify
from app.audit.models import AuditChainHead, AuditEvent
from app.audit.retention import prune
from app.dbtypes import now_utc
from app.extensions import db

def make_app(url, folder):
    """Create the app on an empty, migrated database."""
    if url.startswith("postgresql"):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    app = create_app({"SECRET_KEY": "b" * 40, "SQLALCHEMY_DATABASE_URI": url, "INSTANCE_DIR": folder})
    with app.app_context():
        flask_migrate.upgrade()
    return app


def bench_record(app, count):
    """Time count sequential record() calls; return (mean, p50, p99) in microseconds."""
    samples = []
    with app.app_context():
        for i in range(count):
            start = time.perf_counter()
            record("session.started", f"started session with web{i % 50} (10.0.0.{i % 250}:22)", actor="bench",
                   target=f"web{i % 50} (10.0.0.{i % 250}:22)", session_id="b" * 36, source_ip="10.1.2.3",
                   details={"device_id": i % 50, "ssh_user": "ops"})
            samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.fmean(samples), samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def bulk_chain(app, count, age):
    """Append count valid chain rows, `age` old, in bulk (the same hashing as record())."""
    actions = list(CATALOGUE)
    with app.app_context():
        head = db.session.get(AuditChainHead, 1)
        last_id, last_hash = head.last_id, head.last_hash
        base = now_utc() - age
        batch = []
        for i in range(count):
            row = {"id": last_id + 1, "occurred_at": base + timedelta(microseconds=i * 10), "actor": f"user{i % 40}",
                   "user_id": None, "action": actions[i % len(actions)], "outcome": "success" if i % 7 else "failure",
                   "severity": "info", "message": f"bench event {i}", "source_ip": f"10.0.{i % 200}.{i % 250}",
                   "user_agent": "bench/1.0", "request_id": f"{i:032x}", "target": f"web{i % 50} (10.0.0.5:22)",
                   "session_id": None, "details": {"n": i}}
            row["prev_hash"] = last_hash
            row["hash"] = last_hash = chain_hash(last_hash, row)
            last_id += 1
            batch.append(row)
            if len(batch) == 5000:
                db.session.execute(sa.insert(AuditEvent), batch)
                batch = []
        if batch:
            db.session.execute(sa.insert(AuditEvent), batch)
        db.session.execute(sa.update(AuditChainHead).values(last_id=last_id, last_hash=last_hash))
        db.session.commit()


def run(name, url, folder, events, records):
    """Measure one database; return a dict of figures."""
    app = make_app(url, folder)
    bulk_chain(app, events, age=timedelta(days=30))
    with app.app_context():
        start = time.perf_counter()
        verdict = verify()
        verify_s = time.perf_counter() - start
    assert verdict.ok and verdict.count == events, str(verdict)
    mean, p50, p99 = bench_record(app, records)
    with app.app_context():
        start = time.perf_counter()
        result = prune(retention_days=7)
        prune_s = time.perf_counter() - start
        assert result.count == events, result
        assert verify().ok
        db.engine.dispose()
    return {"db": name, "record_mean_us": mean, "record_p50_us": p50, "record_p99_us": p99,
            "verify_s": verify_s, "prune_s": prune_s, "events": events}


def run_on_own_database(folder, args):
    """Run on a PostgreSQL database made for this run (BENCH_PG's server), dropped afterwards."""
    from bench.audit_viewer import own_database  # it imports this module: imported here, not at the top

    name = f"bench_audit_{os.getpid()}"
    try:
        return run("PostgreSQL", own_database(True, name), folder, args.events, args.records)
    finally:
        own_database(False, name)


def main():
    """Run the audit benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        results.append(run("SQLite", f"sqlite:///{Path(folder) / 'bench.db'}", folder, args.events, args.records))
        if not args.skip_pg:
            results.append(run_on_own_database(folder, args))
    print(f"\n{'database':<11} {'record() mean/p50/p99 (µs)':>28} {'verify ' + str(args.events):>14} "
          f"{'prune ' + str(args.events):>14}")
    for r in results:
        print(f"{r['db']:<11} {r['record_mean_us']:>10.0f} /{r['record_p50_us']:>6.0f} /{r['record_p99_us']:>6.0f}"
              f" {r['verify_s']:>12.2f} s {r['prune_s']:>12.2f} s")


if __name__ == "__main__":
    main()
