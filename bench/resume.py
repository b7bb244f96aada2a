"""Resumable terminals: the memory a detached session keeps and the time a resume takes.

Run: .venv/bin/python -m bench.resume [--sessions 100] [--detached 30] [--variants printing,full,idle]

Everything runs on this machine: a private sshd on 127.0.0.1 (tests/support.py), the app under gunicorn's
gevent worker (one process, recording on as shipped, TERMINAL_RESUME_SECONDS=600 so nothing expires), and
this load generator (gevent). For each variant a fresh server opens N terminals, each running the same
command: `printing` a 100-byte line every 0.2 s, `full` the same after a 320 kB burst (every kept buffer
full: TERMINAL_RESUME_BUFFER_KB=256), `idle` a shell at its prompt. It reads the worker's resident memory
(VmRSS) before, with the N attached, once all N sockets were dropped without a close (N session.detached
in the trail) and after they ran detached for a while; then resumes every session, one at a time and all
at once, from the client's byte offset (a network blip) and from offset 0 (a reload: the kept output is
replayed), timing from the new socket's connect to the `resumed` message and to the first output frame.
The timed resumes of a batch come within 30 s of a log-in (Run.fresh_login says why). At the end every
session is resumed and closed (client_closed), the servers stopped and the temporary folder removed.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from app.audit.models import AuditEvent  # noqa: E402
from app.extensions import db  # noqa: E402
from bench.terminals import percentile, rss_mib, worker_pid  # noqa: E402
from tests.support import LiveServer, SSHServer, connect_terminal, server_app  # noqa: E402

# perl prints without a fork per line (a `sleep` per line would be 500 processes a second for 100 sessions).
LINES = ("perl -e '$|=1; for ($i = 1; ; $i++) { printf \"L%06d %s\\n\", $i, \"x\" x 90;"
         " select(undef, undef, undef, 0.2) }'")
BURST = "head -c 240000 /dev/zero | base64 -w 100; "  # 320 kB of output first: every kept buffer is full
VARIANTS = {"printing": (LINES + "\n", b"L000001"), "full": (BURST + LINES + "\n", b"L000001"),
            "idle": ("echo ready-$((6*7))\n", b"ready-42")}
ENV = {"GATEHOUSE_ACCESS_LOG": "", "LOG_LEVEL": "WARNING", "SESSION_HEARTBEAT_SECONDS": "10", "WS_PING_SECONDS": "10",
       "SSH_CONNECT_TIMEOUT": "30", "TERMINAL_RESUME_SECONDS": "600"}
TIMEOUT = 120


class Term:
    """One terminal's client side: its socket, the output bytes it has taken (its resume offset), its session."""

    def __init__(self, server, http, device_id, command, marker):
        self.ws = connect_terminal(f"{server.ws_url}/terminals/{device_id}/ws?cols=120&rows=30", http, server.url)
        self.offset, self.session = 0, None
        while self.session is None:
            message = self.control(self.ws.receive(timeout=TIMEOUT))
            self.session = message.get("session") if message.get("type") == "connected" else None
        self.ws.send(command.encode())
        self.read_until(marker)

    def control(self, frame):
        """Count an output frame into the offset, or return a control message (a dict); fail on an error."""
        if frame is None:
            raise RuntimeError(f"nothing from the gateway for {TIMEOUT} s (session {self.session})")
        if isinstance(frame, bytes):
            self.offset += len(frame)
            return {}
        message = json.loads(frame)
        if message.get("type") in ("error", "closed"):
            raise RuntimeError(f"session {self.session}: {message}")
        return message

    def read_until(self, marker):
        """Take output until marker shows up."""
        seen = b""
        while marker not in seen:
            frame = self.ws.receive(timeout=TIMEOUT)
            self.control(frame)
            seen = seen[-64:] + (frame if isinstance(frame, bytes) else b"")

    def drain(self, quiet=0.1, longest=1.0):
        """Take what the gateway sent until it is quiet for a moment (a printing one: for a second at most)."""
        deadline = time.monotonic() + longest
        frame = self.ws.receive(timeout=quiet)
        while frame is not None and time.monotonic() < deadline:
            self.control(frame)
            frame = self.ws.receive(timeout=quiet)
        if frame is not None:
            self.control(frame)

    def drop(self):
        """Lose the network: the socket goes without a close frame (the session is detached)."""
        self.ws.sock.shutdown(socket.SHUT_RDWR)
        self.ws.sock.close()

    def resume(self, server, http, offset, expect_output):
        """Attach again from offset; return (ms to `resumed`, ms to the first output or None, its bytes)."""
        url = f"{server.ws_url}/terminals/sessions/{self.session}/ws?offset={offset}&cols=120&rows=30"
        start = time.perf_counter()
        self.ws = connect_terminal(url, http, server.url)
        resumed = None
        while True:
            frame = self.ws.receive(timeout=TIMEOUT)
            message = self.control(frame)
            if message.get("type") == "resumed":
                resumed, self.offset = (time.perf_counter() - start) * 1000, message["offset"]
                if not expect_output:
                    return resumed, None, 0
            elif isinstance(frame, bytes) and resumed is not None:
                return resumed, (time.perf_counter() - start) * 1000, len(frame)


def count(server, action):
    """Return how many events of one action the server's trail holds."""
    app = server_app(server)
    with app.app_context():
        found = db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))
        db.engine.dispose()
    return found


def wait_count(server, action, goal):
    """Wait until the trail holds goal events of an action."""
    deadline = time.monotonic() + TIMEOUT
    while (found := count(server, action)) < goal:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{found} {action} events, {goal} expected, after {TIMEOUT} s")
        gevent.sleep(0.2)


def at_once(function, items, wave=None):
    """Run function on every item concurrently (in waves of `wave`); return the results in order."""
    wave = wave or len(items)
    results = []
    for start in range(0, len(items), wave):
        jobs = [gevent.spawn(function, item) for item in items[start:start + wave]]
        gevent.joinall(jobs, timeout=TIMEOUT * 2, raise_error=True)
        results += [job.value for job in jobs]
    return results


class Run:
    """One variant on a fresh server: N terminals, their memory, their resumes."""

    def __init__(self, server, sshd, name, sessions):
        self.server, self.name, self.sessions = server, name, sessions
        self.http, self.logged_in_at = server.login(), time.monotonic()
        self.device_id = server.add_device(self.http, sshd, "bench")
        self.command, self.marker = VARIANTS[name]
        self.drops = 0  # session.detached events there must be by now
        self.memory = {}  # KiB of the worker's resident memory at each step

    def rss(self, step):
        """Note the worker's resident memory at a step (after a second for freed memory to settle)."""
        gevent.sleep(1)
        self.memory[step] = rss_mib(worker_pid(self.server)) * 1024

    def open_all(self):
        """Open the N terminals in waves of 25, after one warm-up terminal (first-use imports and caches)."""
        warm = self.new_term(None)
        warm.ws.close()
        wait_count(self.server, "session.ended", 1)
        self.rss("base")
        self.terms = at_once(self.new_term, list(range(self.sessions)), wave=25)

    def new_term(self, _):
        """Open one terminal and start the variant's command in it."""
        return Term(self.server, self.http, self.device_id, self.command, self.marker)

    def drop_all(self):
        """Drop every socket (after taking what was sent) and wait until all are detached."""
        at_once(lambda t: t.drain(), self.terms)
        for term in self.terms:
            term.drop()
        self.drops += len(self.terms)
        wait_count(self.server, "session.detached", self.drops)

    def fresh_login(self):
        """Log in again when the log-in is 30 s old, so no timed resume is also the request that writes the log-in's
        activity (due a minute after the last write): the figures are of resumes alone."""
        if time.monotonic() - self.logged_in_at > 30:
            self.http, self.logged_in_at = self.server.login(), time.monotonic()

    def resume_all(self, offset_zero, together):
        """Resume every session (from its offset, or from 0) one by one or all at once; return the timings."""
        expect = offset_zero or self.name != "idle"  # an idle shell printed nothing meanwhile

        def one(term):
            if not together:
                self.fresh_login()
            return term.resume(self.server, self.http, 0 if offset_zero else term.offset, expect)

        self.fresh_login()
        timings = at_once(one, self.terms) if together else [one(term) for term in self.terms]
        self.drop_all()
        return timings

    def measure(self, detached_seconds):
        """Memory attached, detached and after a while detached; then the four kinds of resume."""
        self.open_all()
        gevent.sleep(5)  # a few seconds of output with everything attached
        at_once(lambda t: t.drain(), self.terms)
        self.rss("attached")
        self.drop_all()
        self.rss("detached")
        gevent.sleep(detached_seconds)
        self.rss(f"detached {detached_seconds} s")
        resumes = {}
        for together in (False, True):
            for offset_zero in (False, True):
                resumes[(together, offset_zero)] = self.resume_all(offset_zero, together)
        return resumes

    def close_all(self):
        """Resume each session once more and close it (an explicit close ends it); wait for all the ends."""
        self.logged_in_at = 0
        self.fresh_login()
        at_once(lambda t: t.resume(self.server, self.http, t.offset, False), self.terms)
        for term in self.terms:
            term.ws.close()
        wait_count(self.server, "session.ended", len(self.terms) + 1)
        self.rss("all closed")


def print_memory(run, detached_seconds):
    """Print the worker's memory at each step and per session."""
    m, n = run.memory, run.sessions
    print(f"\n[{run.name}] worker RSS, MiB: " + ", ".join(f"{k} {v / 1024:.1f}" for k, v in m.items()))
    per = {k: (m[k] - m["base"]) / n for k in ("attached", "detached", f"detached {detached_seconds} s")}
    print(f"[{run.name}] per session, KiB: attached {per['attached']:.0f}, just detached {per['detached']:.0f},"
          f" after {detached_seconds} s detached {per[f'detached {detached_seconds} s']:.0f}"
          f" (detached - attached: {per[f'detached {detached_seconds} s'] - per['attached']:+.0f})", flush=True)


def spread(samples):
    """Return "p50/p95/max" of samples in whole ms."""
    if not samples:
        return "-"
    return f"{percentile(samples, .5):.0f}/{percentile(samples, .95):.0f}/{max(samples):.0f}"


def print_resumes(run, resumes):
    """Print p50/p95/max of the time to `resumed` and to the first output for each kind of resume."""
    print(f"[{run.name}] {'resume':<26} {'to resumed, ms':>16} {'to output, ms':>16} {'1st frame KiB':>14}"
          "   (p50/p95/max)")
    for (together, offset_zero), timings in resumes.items():
        label = ("all at once" if together else "one at a time") + (", offset 0" if offset_zero else ", from offset")
        output = spread([t[1] for t in timings if t[1] is not None])
        size = sum(t[2] for t in timings) / len(timings) / 1024
        print(f"[{run.name}] {label:<26} {spread([t[0] for t in timings]):>16} {output:>16} {size:>14.1f}",
              flush=True)


def main():
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--detached", type=int, default=30, help="seconds the sessions run detached before resuming")
    parser.add_argument("--variants", default="printing,full,idle")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f};"
          f" {args.sessions} sessions, {args.detached} s detached", flush=True)
    work = Path(tempfile.mkdtemp(prefix="gatehouse-bench-resume-"))
    sshd = SSHServer(work / "sshd", extra={"MaxSessions": "1000", "MaxStartups": "2000:100:2000"}).start()
    try:
        for name in args.variants.split(","):
            server = LiveServer(work / name, env=ENV).start()
            try:
                run = Run(server, sshd, name, args.sessions)
                resumes = run.measure(args.detached)
                run.close_all()
                print_memory(run, args.detached)
                print_resumes(run, resumes)
            except Exception:
                kept = Path(tempfile.gettempdir()) / f"gatehouse-bench-resume-{name}.log"
                shutil.copy(server.log_path, kept)
                print(f"the server's log: {kept}")
                raise
            finally:
                server.stop()
    finally:
        sshd.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
