"""Syslog forwarding costs: record() with and without the outbox, events/s to a loopback rsyslog, write-to-receipt delay.

Run: .venv/bin/python -m bench.forwarding [--records 2000] [--events 5000] [--rate 200] [--pg URL]
SQLite in a temporary folder; with --pg also that PostgreSQL database (emptied first; never a shared one).
Needs /usr/sbin/rsyslogd (Debian's rsyslog).
"""
import argparse
import re
import signal
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from app.audit import forwarding
from app.audit.events import record
from app.jobs.table import start
from bench.audit import bench_record, make_app
from tests.support import free_port, wait_for_port


def start_rsyslog(folder):
    """Start rsyslogd on a free loopback port, writing receipt time and raw message per line; return (proc, port, file)."""
    port, out = free_port(), folder / "received.log"
    (folder / "work").mkdir()
    (folder / "rsyslog.conf").write_text(
        f'global(workDirectory="{folder / "work"}")\nmodule(load="imtcp")\n'
        'template(name="raw" type="string" string="%timegenerated:::date-rfc3339% %rawmsg%\\n")\n'
        f'ruleset(name="audit") {{ action(type="omfile" file="{out}" template="raw") }}\n'
        f'input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="audit")\n')
    proc = subprocess.Popen(["/usr/sbin/rsyslogd", "-n", "-f", str(folder / "rsyslog.conf"),
                             "-i", str(folder / "rsyslog.pid")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc=proc)
    return proc, port, out


def count_lines(path):
    """Return how many messages arrived."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run_sender(app):
    """Run the sender as the jobs driver runs it; return a function that stops it."""
    driver = start(app, names={"forwarding"})

    def stop():
        driver.stop(join_seconds=10)
    return stop


def throughput(app, out, count):
    """Queue count more events with the sender stopped, then time the drain of the whole queue; return events/s."""
    with app.app_context():
        for i in range(count):
            record("auth.login", f"bench {i} logged in", actor="bench", source_ip="10.1.2.3", target=f"web{i % 50}")
        count = forwarding.queue_status()[0]  # the record() benchmark's rows are queued too
    before = count_lines(out)
    start = time.perf_counter()
    stop = run_sender(app)
    deadline = time.monotonic() + 120
    while count_lines(out) < before + count and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    stop()
    return count / elapsed


def delays(app, out, rate, seconds):
    """Record events at rate per second with the sender running; return write-to-receipt delays (ms, sorted)."""
    stop = run_sender(app)
    time.sleep(1.0)  # connected and idle
    before = count_lines(out)
    total = rate * seconds
    with app.app_context():
        for i in range(total):
            record("auth.logout", f"delay {i}", actor="delay")
            time.sleep(1 / rate)
    deadline = time.monotonic() + 30
    while count_lines(out) < before + total and time.monotonic() < deadline:
        time.sleep(0.05)
    stop()
    samples = []
    for line in out.read_text(encoding="utf-8").splitlines()[before:]:
        received, rest = line.split(" ", 1)
        occurred = re.match(r"<\d+>1 (\S+)", rest).group(1)
        samples.append((datetime.fromisoformat(received) - datetime.fromisoformat(occurred)).total_seconds() * 1000)
    return sorted(samples)


def main():
    """Print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--pg", help="a PostgreSQL URL of a throw-away database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        proc, port, out = start_rsyslog(folder)
        try:
            urls = [("sqlite", f"sqlite:///{folder / 'a.db'}", f"sqlite:///{folder / 'b.db'}")]
            if args.pg:
                urls.append(("postgresql", args.pg, args.pg))
            for name, plain_url, outbox_url in urls:
                plain = make_app(plain_url, tmp)
                mean, p50, p99 = bench_record(plain, args.records)
                print(f"{name}: record() without targets: mean {mean:.0f} us, p50 {p50:.0f} us, p99 {p99:.0f} us")
                app = make_app(outbox_url, tmp)
                app.config["SYSLOG_TARGETS"] = (f"tcp://127.0.0.1:{port}",)
                mean, p50, p99 = bench_record(app, args.records)
                print(f"{name}: record() with one target (outbox row): mean {mean:.0f} us, p50 {p50:.0f} us, "
                      f"p99 {p99:.0f} us")
                drained = throughput(app, out, args.events)
                print(f"{name}: drained the queue (record() benchmark's events + {args.events}) at {drained:.0f} events/s")
                samples = delays(app, out, args.rate, args.seconds)
                print(f"{name}: write-to-receipt delay at {args.rate}/s: p50 {samples[len(samples) // 2]:.0f} ms, "
                      f"p99 {samples[int(len(samples) * 0.99)]:.0f} ms ({len(samples)} events)")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
