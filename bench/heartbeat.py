"""The heartbeat's stall of the event loop at thousands of idle terminals, SQLite and PostgreSQL.

Run: .venv/bin/python -m bench.heartbeat [--sizes 1000,2000,5000] [--skip-pg]

In one gevent process (as a gunicorn worker is): N open session rows and N idle terminals held in the registry;
a ticker greenlet asks to wake every 2 ms while app.terminals.registry.heartbeat() writes them, and the longest it
waited past its time is the stall every terminal of the worker would feel. The same N rows are also written as the
heartbeat wrote them before (one transaction, one UPDATE compiled and run per row) for comparison. PostgreSQL runs in
a database of its own (BENCH_PG, as bench.audit_viewer), dropped at the end.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import secrets  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import gevent  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from app.dbtypes import now_utc  # noqa: E402
from app.extensions import db  # noqa: E402
from app.terminals import registry  # noqa: E402
from app.terminals.models import TerminalSession  # noqa: E402
from bench.audit_viewer import own_database  # noqa: E402
from tests.support import make_app  # noqa: E402


def old_heartbeat(counters):
    """The heartbeat as it was: every row in one transaction, an UPDATE each."""
    now = now_utc()
    with db.engine.begin() as conn:
        for session_id, bytes_in, bytes_out in counters:
            conn.execute(sa.update(TerminalSession)
                         .where(TerminalSession.id == session_id, TerminalSession.ended_at.is_(None))
                         .values(heartbeat_at=now, bytes_in=bytes_in, bytes_out=bytes_out))


def stall(work, tick=0.002):
    """Run work() while a ticker greenlet wakes every tick; return (longest lateness ms, longest CPU burst ms
    between two wake-ups, seconds work took). The burst is the loop's own doing; lateness adds the machine's load."""
    worst, burst, done = [0.0], [0.0], [False]

    def ticker():
        cpu = time.process_time()
        while not done[0]:
            due = time.perf_counter() + tick
            gevent.sleep(tick)
            worst[0] = max(worst[0], time.perf_counter() - due)
            burst[0], cpu = max(burst[0], time.process_time() - cpu), time.process_time()

    watcher = gevent.spawn(ticker)
    gevent.sleep(0.01)
    start = time.perf_counter()
    work()
    took = time.perf_counter() - start
    done[0] = True
    watcher.join()
    return worst[0] * 1000, burst[0] * 1000, took


def hold_terminals(count):
    """Insert count open session rows and hold as many idle terminals in the registry; return them."""
    rows = [{"id": str(uuid.uuid4()), "actor": "admin", "target": "bench (127.0.0.1:22)", "worker": "bench:1",
             "started_at": now_utc(), "heartbeat_at": now_utc(), "bytes_in": 0, "bytes_out": 0} for _ in range(count)]
    db.session.execute(sa.insert(TerminalSession), rows)
    db.session.commit()
    terminals = [SimpleNamespace(metadata=SimpleNamespace(id=row["id"]), login_id=None, input_at=0.0,
                                 activity_written_at=0.0, bridge=SimpleNamespace(bytes_in=1, bytes_out=2))
                 for row in rows]
    for terminal in terminals:
        registry.hold(terminal)
    return terminals


def bench_database(name, url, folder, sizes):
    """Print the stalls on one database."""
    app = make_app(Path(folder), url)
    print(f"\n{name}: stall = longest lateness of a 2 ms timer (wall ms) / longest CPU burst without a yield (ms)")
    print(f"{'idle terminals':>14} {'before: stall':>16} {'took s':>7} {'now: stall':>16} {'took s':>7}")
    with app.app_context():
        for size in sizes:
            terminals = hold_terminals(size)
            counters = [(t.metadata.id, 1, 2) for t in terminals]
            before = stall(lambda: old_heartbeat(counters))
            after = stall(registry.heartbeat)
            print(f"{size:>14} {before[0]:>7.1f} / {before[1]:>6.1f} {before[2]:>7.2f}"
                  f" {after[0]:>7.1f} / {after[1]:>6.1f} {after[2]:>7.2f}", flush=True)
            for terminal in terminals:
                registry.release(terminal)
            db.session.execute(sa.delete(TerminalSession))
            db.session.commit()
        db.engine.dispose()


def main():
    """Measure the heartbeat's stall on SQLite and PostgreSQL."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,2000,5000")
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        bench_database("SQLite", None, folder, sizes)
        if not args.skip_pg:
            name = f"bench_heartbeat_{secrets.token_hex(4)}"
            try:
                bench_database("PostgreSQL", own_database(True, name), folder, sizes)
            finally:
                own_database(False, name)


if __name__ == "__main__":
    main()
