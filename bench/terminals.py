"""Terminal data path: the gateway against a direct paramiko session and OpenSSH's ssh, side by side in one run.

Run: .venv/bin/python -m bench.terminals [--sizes 1,100,500] [--seconds 10] [--rate 10] [--mb 50] [--quick]

Everything runs on this machine: a private sshd on 127.0.0.1 (tests/support.py), the app under gunicorn's
gevent worker (one process; recording on as shipped, and a second server with RECORDING=off), and the load
from a separate process (bench/loadgen.py: asyncio and a minimal websocket client), whose CPU time is
reported beside the worker's. For each size, every path opens that many terminals, each typing `rate` keys a
second and waiting for the echo: echo p50/p99 and terminals lost. The worker's resident memory is read idle
(started, one log-in) and with the terminals open (per terminal). Bulk output: MB/s of one large output.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy

from tests.support import LiveServer, SSHServer

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
IDLE_SECONDS = 4  # the worker's CPU is read this long with the terminals open and nobody typing


def percentile(samples, q):
    """Return the q-quantile of samples (nan when there are none)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def rss_mib(pid):
    """Return the resident memory of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid):
    """Return the CPU time a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def worker_pid(server):
    """Return the pid of a server's (one) gunicorn worker."""
    return int(Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()[0])


class Way:
    """One way to a shell: the gateway (a server and its logged-in session) or sshd directly."""

    def __init__(self, label, kind, plan, server=None):
        self.label, self.kind, self.plan, self.server = label, kind, plan, server
        self.worker = worker_pid(server) if server else None


def gateway_path(label, server, sshd):
    """Log in to a server, add the bench device and return its path."""
    http = server.login()
    device = server.add_device(http, sshd, "bench")
    plan = {"url": f"{server.ws_url}/terminals/{device}/ws", "origin": server.url,
            "cookie": "; ".join(f"{c.name}={c.value}" for c in http.cookies)}
    return Way(label, "gateway", plan, server)


def drive(path, count, seconds=0, rate=10, megabytes=0):
    """Run one load generator for a path; return its result with the worker's memory and CPU."""
    plan = {**path.plan, "kind": path.kind, "count": count, "seconds": seconds, "rate": rate, "megabytes": megabytes}
    gen = subprocess.Popen([sys.executable, "-m", "bench.loadgen"], cwd=ROOT, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        gen.stdin.write(json.dumps(plan) + "\n")
        gen.stdin.flush()
        json.loads(gen.stdout.readline() or "{}")
        extra = {}
        if path.worker:
            time.sleep(1)  # the open terminals settle (their first flush)
            idle_cpu = cpu_seconds(path.worker)
            time.sleep(IDLE_SECONDS)
            extra["idle_cpu"] = (cpu_seconds(path.worker) - idle_cpu) / IDLE_SECONDS * 100
            extra["rss"], worker_cpu = rss_mib(path.worker), cpu_seconds(path.worker)
        gen.stdin.write("go\n")
        gen.stdin.flush()
        result = json.loads(gen.stdout.readline())
        if path.worker:
            extra["worker_cpu"] = cpu_seconds(path.worker) - worker_cpu
        gen.wait(timeout=120)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    return {**result, **extra}


def settle(path, timeout=120):
    """Wait until the server of a path has ended every session the last run opened."""
    if not path.worker:
        return
    engine = sqlalchemy.create_engine(path.server.database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if not conn.scalar(sqlalchemy.text("SELECT count(*) FROM terminal_sessions WHERE ended_at IS NULL")):
                    break
            time.sleep(0.5)
    finally:
        engine.dispose()
    time.sleep(1)


def crowd_rows(paths, sizes, seconds, rate):
    """Measure every path at every size; return table rows."""
    rows = []
    for size in sizes:
        for path in paths:
            idle = rss_mib(path.worker) if path.worker else None
            result = drive(path, size, seconds, rate)
            samples = result.get("samples", [])
            row = {"path": path.label, "terminals": size, "keys": len(samples), "p50": percentile(samples, .5),
                   "p99": percentile(samples, .99), "lost": result.get("lost", size),
                   "gen_cpu": (result["cpu"] + result["child_cpu"]) / result["wall"] * 100}
            if path.worker:
                row["mib_per_terminal"] = (result["rss"] - idle) / max(1, result["opened"])
                row["worker_cpu"] = result["worker_cpu"] / result["wall"] * 100
                row["idle_cpu"] = result["idle_cpu"]
            rows.append(row)
            print_crowd([row], header=not rows[:-1])
            settle(path)
    return rows


def print_crowd(rows, header=True):
    """Print crowd rows."""
    if header:
        print(f"\n{'path':<24} {'terms':>5} {'keys':>6} {'p50 ms':>8} {'p99 ms':>8} {'lost':>5} {'MiB/term':>9}"
              f" {'worker CPU% idle/typing':>23} {'load CPU%':>9}")
    for r in rows:
        mib = f"{r['mib_per_terminal']:.3f}" if "mib_per_terminal" in r else "-"
        cpu = f"{r['idle_cpu']:.0f} / {r['worker_cpu']:.0f}" if "worker_cpu" in r else "-"
        print(f"{r['path']:<24} {r['terminals']:>5} {r['keys']:>6} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['lost']:>5}"
              f" {mib:>9} {cpu:>23} {r['gen_cpu']:>9.0f}", flush=True)


def bulk_rows(paths, megabytes):
    """Measure one large output through every path; return table rows."""
    rows = []
    for path in paths:
        result = drive(path, 1, megabytes=megabytes)
        rows.append({"path": path.label, "mb_per_s": result["mb_per_s"],
                     "gen_cpu": (result["cpu"] + result["child_cpu"]) / result["wall"] * 100})
        print(f"bulk {path.label:<24} {result['mb_per_s']:>7.1f} MB/s  (load CPU {rows[-1]['gen_cpu']:.0f} %)",
              flush=True)
    return rows


def run(sizes=(1, 100, 500), seconds=10, rate=10, megabytes=50):
    """Start sshd and two servers, measure every path; return {"idle": ..., "crowd": [...], "bulk": [...]}."""
    work = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    sshd = SSHServer(work / "sshd", extra={"MaxSessions": "1000", "MaxStartups": "2000:100:2000"}).start()
    env = {"GATEHOUSE_ACCESS_LOG": "", "LOG_LEVEL": "WARNING", "SESSION_HEARTBEAT_SECONDS": "10",
           "WS_PING_SECONDS": "10", "SSH_CONNECT_TIMEOUT": "30", "TERMINAL_RESUME_SECONDS": "0"}
    servers = [LiveServer(work / "app", env=env), LiveServer(work / "app-off", env={**env, "RECORDING": "off"})]
    try:
        for server in servers:
            server.start()
        paths = [gateway_path("gateway, recording on", servers[0], sshd),
                 gateway_path("gateway, recording off", servers[1], sshd)]
        time.sleep(2)
        idle = {p.label: rss_mib(p.worker) for p in paths}
        print("idle worker: " + ", ".join(f"{label} {mib:.1f} MiB" for label, mib in idle.items()), flush=True)
        plain = {"port": sshd.port, "user": sshd.user, "password": sshd.password, "key": str(sshd.key_path)}
        paths += [Way("paramiko direct", "paramiko", plain), Way("OpenSSH ssh", "ssh", plain)]
        bulk = bulk_rows(paths, megabytes)
        crowd = crowd_rows(paths, sizes, seconds, rate)
        return {"idle": idle, "crowd": crowd, "bulk": bulk}
    except Exception:
        print(servers[0].log_text()[-3000:])
        raise
    finally:
        for server in servers:
            server.stop()
        sshd.stop()


def main():
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,100,500")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10, help="keys a second per terminal")
    parser.add_argument("--mb", type=int, default=50, help="MB of bulk output")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 and 20 terminals, 3 s, 10 MB")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.seconds, args.mb = "1,20", 3, 10
    run([int(s) for s in args.sizes.split(",")], args.seconds, args.rate, args.mb)


if __name__ == "__main__":
    main()
