"""Thousands of idle terminals held by one gateway worker: CPU, memory and the longest stall a user would feel.

Run: .venv/bin/python -m bench.idle [--terminals 5000] [--seconds 30] [--wave 50] [--quick]

Everything on 127.0.0.1: a private sshd (tests/support.py; one connection is its two processes and a shell), the
app under gunicorn with ONE gevent worker, recording on and heartbeat, pings and resume as shipped, its connection
limits raised for the crowd; the load from a separate process (bench/idle_load.py, bench.loadgen's client). The
terminals open in waves and must all be held; then for `seconds`, while nobody else types, one terminal of the crowd
after the other types a key every quarter second and its echo time is kept (at least one heartbeat falls in the
window). Worker CPU (total, per terminal) and memory (per terminal above the idle worker) are read over the same
window. File limits are raised for every process started here as far as the hard limit lets; the crowd is cut (and
it says so) to what that limit, the free PTYs (kernel.pty.max: sshd gives each terminal one) and memory allow.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy

from bench.terminals import ROOT, cpu_seconds, gateway_path, percentile, rss_mib
from tests.support import LiveServer, SSHServer

PROBE_EVERY = 0.25  # s between two probe keys: 4 a second, next to nothing for a worker holding thousands
MIB_PER_TERMINAL = 3.5  # the machine's memory a terminal takes: sshd's two processes and bash (2.6 MiB), kernel, worker
SHIPPED = {"SESSION_HEARTBEAT_SECONDS": "10", "WS_PING_SECONDS": "10", "TERMINAL_RESUME_SECONDS": "120",
           "AUDIT_POLL_SECONDS": "5", "GATEHOUSE_GRACEFUL_TIMEOUT": "10"}  # tests/support.py shortens these


def raise_file_limit(terminals):
    """Raise RLIMIT_NOFILE of this process (and so of everything it starts) as far as the hard limit lets: the
    worker holds about three files per terminal (websocket, SSH socket, recording), the load process one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * terminals + 1000)), hard))
    return hard


def ptys_free():
    """Return how many PTYs the kernel can still hand out (sshd gives each terminal one)."""
    pty = Path("/proc/sys/kernel/pty")
    return int((pty / "max").read_text()) - int((pty / "nr").read_text())


def fitting(terminals):
    """Return the crowd cut to the free PTYs and memory, less a margin for everyone else; say so when it is cut."""
    ptys, memory = ptys_free() - 64, int((available_mib() - 3072) / MIB_PER_TERMINAL)
    files = (raise_file_limit(terminals) - 500) // 3
    if terminals > files:
        print(f"the hard RLIMIT_NOFILE allows about {files} terminals in one worker: cut to that", flush=True)
    if terminals > ptys:
        print(f"kernel.pty.max leaves {ptys + 64} PTYs free: {terminals} terminals cut to {ptys} "
              f"(as root: sysctl -w kernel.pty.max=16384 for more)", flush=True)
    if terminals > memory:
        print(f"{available_mib():.0f} MiB available, about {MIB_PER_TERMINAL} a terminal: cut to {memory}", flush=True)
    return max(1, min(terminals, ptys, memory, files))


def open_sessions(server):
    """Return how many sessions the server's database says are open."""
    engine = sqlalchemy.create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            return conn.scalar(sqlalchemy.text("SELECT count(*) FROM terminal_sessions WHERE ended_at IS NULL"))
    finally:
        engine.dispose()


def available_mib():
    """Return the machine's available memory in MiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_load(plan, log):
    """Start the load process on a plan; return it once it says how many terminals opened, and that answer."""
    gen = subprocess.Popen([sys.executable, "-m", "bench.idle_load"], cwd=ROOT, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=log, text=True)
    gen.stdin.write(json.dumps(plan) + "\n")
    gen.stdin.flush()
    return gen, json.loads(gen.stdout.readline() or "{}")


def measure(way, plan, work):
    """Open the crowd, hold it idle for the plan's seconds; return the figures of one row."""
    idle_rss = rss_mib(way.worker)
    with open(work / "load.log", "w") as log:
        gen, opened = start_load(plan, log)
        try:
            time.sleep(2)  # the last terminals settle (their first flush)
            held, cpu, wall = open_sessions(way.server), cpu_seconds(way.worker), time.monotonic()
            gen.stdin.write("go\n")
            gen.stdin.flush()
            time.sleep(plan["seconds"])
            cpu, wall = cpu_seconds(way.worker) - cpu, time.monotonic() - wall
            rss = rss_mib(way.worker)
            result = json.loads(gen.stdout.readline() or "{}")
            gen.wait(timeout=120)
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
    n = max(1, opened.get("opened", 0))
    timed = sorted(result.get("samples", []), key=lambda sample: -sample[1])
    samples, control = [ms for _, ms, _ in timed], [ms for _, _, ms in timed]
    return {"terminals": plan["count"], "opened": opened.get("opened", 0), "held": held,
            "dropped": result.get("dropped", n), "open_s": opened.get("open_seconds", 0.0),
            "cpu": cpu / wall * 100, "cpu_per_terminal": cpu / wall * 100 / n, "idle_rss": idle_rss, "rss": rss,
            "mib_per_terminal": (rss - idle_rss) / n, "probes": len(samples), "slowest": timed[:3],
            "p50": percentile(samples, .5), "max": max(samples, default=float("nan")),
            "control_p50": percentile(control, .5), "control_max": max(control, default=float("nan")),
            "load_cpu": result.get("cpu", 0.0) / max(result.get("wall", 1.0), 1e-9) * 100,
            "loadavg": os.getloadavg()[0]}


def gateway_env(terminals):
    """Return the server's settings: as shipped, with room for the crowd in one worker."""
    return {**SHIPPED, "GATEHOUSE_WORKER_CONNECTIONS": str(terminals + terminals // 10 + 100),
            "MAX_TERMINALS_PER_WORKER": str(terminals + 10), "GATEHOUSE_ACCESS_LOG": "", "LOG_LEVEL": "WARNING",
            "SSH_CONNECT_TIMEOUT": "60"}


def gateway_errors(server):
    """Return the lines of the server's log that speak of trouble."""
    words = ("Traceback", "ERROR", "CRITICAL", "WORKER TIMEOUT", "refused", "Too many open files")
    return [line for line in server.log_text().splitlines() if any(word in line for word in words)]


def run(terminals=5000, seconds=30, wave=50):
    """Start sshd and the gateway, hold the crowd idle; return the row of figures."""
    terminals = fitting(terminals)
    work = Path(tempfile.mkdtemp(prefix="gatehouse-idle-"))
    sshd = SSHServer(work / "sshd", extra={"MaxStartups": f"{4 * wave}:100:{4 * wave}"}).start()
    server, trouble = LiveServer(work / "app", env=gateway_env(terminals)), True
    try:
        server.start()
        way = gateway_path("gateway", server, sshd)
        time.sleep(2)
        direct = {"port": sshd.port, "user": sshd.user, "key": str(sshd.key_path)}
        plan = {**way.plan, "direct": direct, "count": terminals, "wave": wave, "seconds": seconds,
                "every": PROBE_EVERY}
        row = measure(way, plan, work)
        row["errors"] = gateway_errors(server)
        failures = (work / "load.log").read_text().splitlines()
        row["load_errors"] = len(failures)
        print_row(row, failures)
        trouble = failures or row["errors"] or row["dropped"]
        if trouble:
            print(f"  logs kept in {work}")
        return row
    except Exception:
        if getattr(server, "log_path", None):
            print(server.log_text()[-3000:])
        raise
    finally:
        try:
            server.stop()
        finally:
            sshd.stop()
            if not trouble:
                shutil.rmtree(work, ignore_errors=True)


def print_row(r, failures=()):
    """Print the figures of one run as a small table."""
    print(f"\n{'idle terminals, one gevent worker, recording on':<52} {'value':>24}")
    lines = [
        ("terminals asked / opened / open in the database", f"{r['terminals']} / {r['opened']} / {r['held']}"),
        ("dropped by the end (no echo)", f"{r['dropped']}"),
        ("time to open them all, s", f"{r['open_s']:.0f}"),
        ("worker CPU idle, % of a core: total / per terminal", f"{r['cpu']:.1f} / {r['cpu_per_terminal']:.4f}"),
        ("worker RSS MiB: idle / with the crowd / per terminal",
         f"{r['idle_rss']:.0f} / {r['rss']:.0f} / {r['mib_per_terminal']:.3f}"),
        (f"probe echo ms ({r['probes']} keys): p50 / max", f"{r['p50']:.2f} / {r['max']:.1f}"),
        ("control, OpenSSH direct at the same moments: p50 / max", f"{r['control_p50']:.2f} / {r['control_max']:.1f}"),
        ("slowest probes: ms (control ms) at s into the window",
         ", ".join(f"{ms:.0f} ({direct:.0f}) at {at:.1f}" for at, ms, direct in r["slowest"])),
        ("load process CPU %, load average at the end", f"{r['load_cpu']:.0f}, {r['loadavg']:.1f}"),
    ]
    for label, value in lines:
        print(f"{label:<52} {value:>24}")
    for line in list(failures)[:5] + r.get("errors", [])[:10]:
        print("  " + line[:200])


def main():
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--terminals", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=30, help="idle window (at least one heartbeat)")
    parser.add_argument("--wave", type=int, default=50, help="terminals opened at once")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 terminals, 12 s")
    args = parser.parse_args()
    if args.quick:
        args.terminals, args.seconds = 200, 12
    run(args.terminals, args.seconds, args.wave)


if __name__ == "__main__":
    main()
