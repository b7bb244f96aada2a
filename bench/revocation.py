"""How long open terminals take to close after their log-in ends, for each way a log-in can end.

Run: .venv/bin/python -m bench.revocation [--rounds 5] [--workers 2]

A private sshd and the app under gunicorn (gevent, SQLite, `--workers` processes, so the request
that ends a log-in and the terminal it ends are often on different processes) on 127.0.0.1. Each
round opens a terminal, ends its log-in one way, and times until the server closes the websocket.
"""
import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import simple_websocket
import sqlalchemy as sa

from tests.support import ROOT, LiveServer, SSHServer, open_terminal

PASSWORD = "bench-password-long"


def until_closed(ws, limit=30.0):
    """Return the seconds until the server closes ws (reading and dropping frames meanwhile)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            ws.receive(timeout=0.05)
        except simple_websocket.ConnectionClosed:
            return time.monotonic() - started
    return float("nan")


def cli(server, *args):
    subprocess.run([sys.executable, "-m", "flask", "--app", "app", "users", *args], cwd=ROOT,
                   env=server.environment(), check=True, capture_output=True)


def one_round(server, sshd, admin, way):
    """Open a terminal for a fresh user, end its log-in the given way; return seconds to close."""
    name = "b-" + uuid.uuid4().hex[:8]
    cli(server, "create", name, "--password", PASSWORD)
    http = server.login(name, PASSWORD)
    device_id = server.add_device(http, sshd, "dev-" + name)
    ws = open_terminal(f"{server.ws_url}/terminals/{device_id}/ws", http, server.url)
    token = server.csrf(http)
    if way == "log-out":
        http.post(server.url + "/logout", data={"csrf_token": token})
    elif way == "password change (other log-in)":
        other = server.login(name, PASSWORD)
        other.post(server.url + "/account/password", data={"current": PASSWORD, "new": PASSWORD + "2",
                                                           "confirm": PASSWORD + "2", "csrf_token": server.csrf(other)})
    elif way == "password reset (console)":
        cli(server, "reset-password", name, "--password", PASSWORD + "3")
    elif way in ("admin disables the user", "admin deletes the user"):
        page = admin.get(server.url + "/users/").text
        user_id = page.split(f"<td>{name}</td>")[0].rsplit('id="user-', 1)[1].split('"')[0]
        action = "disable" if "disables" in way else "delete"
        admin.post(f"{server.url}/users/{user_id}/{action}", data={"csrf_token": server.csrf(admin)})
    elif way == "lifetime reached":
        engine = sa.create_engine(server.database_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE login_sessions SET expires_at = :t WHERE user_id = "
                                 "(SELECT id FROM users WHERE username = :n)"),
                         {"t": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "n": name})
        engine.dispose()
    return until_closed(ws)


WAYS = ("log-out", "password change (other log-in)", "password reset (console)", "admin disables the user",
        "admin deletes the user", "lifetime reached")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    sshd = SSHServer(work / "sshd").start()
    server = LiveServer(work / "live", env={"WEB_CONCURRENCY": args.workers, "SESSION_HEARTBEAT_SECONDS": 10}).start()
    try:
        admin = server.login()
        print(f"{args.workers} gevent worker(s), SQLite, {args.rounds} rounds each; seconds until the terminal closed")
        print(f"{'how the log-in ended':34} {'min':>6} {'median':>7} {'max':>6}")
        for way in WAYS:
            times = sorted(one_round(server, sshd, admin, way) for _ in range(args.rounds))
            print(f"{way:34} {times[0]:6.2f} {times[len(times) // 2]:7.2f} {times[-1]:6.2f}")
    finally:
        server.stop()
        sshd.stop()


if __name__ == "__main__":
    main()
