"""Writers on one chain: N processes (each its own app and engine) call record() at once, then the chain is verified.

Run: .venv/bin/python -m bench.audit_writers [--writers 4] [--count 500] [--threads 1] [--skip-pg] [--skip-sqlite]
Prints events/s over all writers, each writer's record() p50/p99, and whether verify() finds the chain intact.
PostgreSQL runs in a database of its own on BENCH_PG's server (as bench.audit_viewer), dropped afterwards; SQLite in a
temporary folder. The writers log at WARNING (the INFO line of each event would only flood the output).
"""
import argparse
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from app import create_app
from app.audit.events import record
from app.audit.integrity import verify
from app.audit.models import AuditEvent
from app.extensions import db
from bench.audit import make_app


def _record_some(count, samples):
    """Call record() count times in a row, appending each call's time (µs) to samples."""
    for i in range(count):
        start = time.perf_counter()
        record("session.started", f"started session with web{i % 50} (10.0.0.{i % 250}:22)", actor=f"w{os.getpid()}",
               target=f"web{i % 50} (10.0.0.{i % 250}:22)", session_id="b" * 36, source_ip="10.1.2.3",
               details={"device_id": i % 50, "ssh_user": "ops"})
        samples.append((time.perf_counter() - start) * 1e6)


def _writer(url, folder, count, threads, ready, go, results):
    """One writer process: make the app, say ready, wait for the start, record count events over threads."""
    app = create_app({"SECRET_KEY": "b" * 40, "SQLALCHEMY_DATABASE_URI": url, "INSTANCE_DIR": folder,
                      "LOG_LEVEL": "WARNING"})
    samples = []

    def work():
        with app.app_context():
            _record_some(count // threads, samples)

    with app.app_context():
        db.engine.connect().close()  # the pool's first connection is not what is measured
    ready.put(os.getpid())
    go.wait()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    results.put(sorted(samples))


def run(name, url, folder, writers, count, threads):
    """Measure one database: writers processes of count events each; return a dict of figures."""
    app = make_app(url, folder)
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    procs = [context.Process(target=_writer, args=(url, folder, count, threads, ready, go, results))
             for _ in range(writers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    started = time.monotonic()
    go.set()
    per_writer = [results.get(timeout=600) for _ in procs]
    seconds = time.monotonic() - started
    for proc in procs:
        proc.join(60)
    with app.app_context():
        verdict = verify()
        ids = db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)).all()
        written = db.session.scalar(select(func.count()).where(AuditEvent.action == "session.started"))
        db.engine.dispose()
    total = sum(len(samples) for samples in per_writer)
    intact = verdict.ok and verdict.count == len(ids) and ids == list(range(1, len(ids) + 1)) and written == total
    return {"db": name, "events": total, "per_s": total / seconds, "intact": intact, "verdict": str(verdict),
            "writers": [(s[len(s) // 2], s[int(len(s) * 0.99)]) for s in per_writer]}


def run_on_own_database(folder, args):
    """Run on a PostgreSQL database made for this run, dropped afterwards."""
    from bench.audit_viewer import own_database  # it imports bench.audit: imported here, as bench.audit does

    name = f"bench_audit_writers_{os.getpid()}"
    try:
        return run("PostgreSQL", own_database(True, name), folder, args.writers, args.count, args.threads)
    finally:
        own_database(False, name)


def main():
    """Run the writers on each database and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writers", type=int, default=4, help="processes")
    parser.add_argument("--count", type=int, default=500, help="events per process")
    parser.add_argument("--threads", type=int, default=1, help="threads per process, sharing its count")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        if not args.skip_sqlite:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            results.append(run("SQLite", url, folder, args.writers, args.count, args.threads))
        if not args.skip_pg:
            results.append(run_on_own_database(folder, args))
    print(f"\n{args.writers} writer processes x {args.threads} thread(s), {args.count} events each, one chain")
    print(f"{'database':<11} {'events/s':>9} {'chain':>7}  record() p50 / p99 per writer (µs)")
    for r in results:
        figures = ", ".join(f"{p50:.0f}/{p99:.0f}" for p50, p99 in r["writers"])
        print(f"{r['db']:<11} {r['per_s']:>9.0f} {'intact' if r['intact'] else 'BROKEN':>7}  {figures}")
        if not r["intact"]:
            print(f"  {r['verdict']}")
    if not all(r["intact"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
