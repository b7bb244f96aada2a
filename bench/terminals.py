"""Terminal data path: the gateway against a direct paramiko session and OpenSSH's ssh.

Run: .venv/bin/python -m bench.terminals [--mb 50] [--keys 200] [--sizes 100,500] [--seconds 10] [--typing 30]

Everything runs on this machine: a private sshd on 127.0.0.1 (tests/support.py), the app under
gunicorn's gevent worker (one process), and this load generator (gevent). Prints throughput of a
large output and keystroke echo latency with session recording on and off, the stored recording
size per MB of bulk output and per minute of typing, and for N terminals typing ~10 keys a second
each (recording on, then off) the echo p50/p99 and the worker's resident memory per open terminal.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import paramiko  # noqa: E402

from tests.support import LiveServer, SSHServer, connect_terminal, read_until  # noqa: E402

MARK = b"BENCH-DONE"
# The command spells the marker differently from its output, so its echo does not end the read.
BULK = "head -c {n} /dev/zero | base64 -w 160; printf 'BENCH-%s\\n' DONE\n"


def percentile(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


class Gateway:
    """A terminal through the gateway's websocket."""

    def __init__(self, server, http, device_id):
        self.ws = connect_terminal(f"{server.ws_url}/terminals/{device_id}/ws", http, server.url)
        self.ws.send(b"echo ready-$((6*7))\n")
        read_until(self.ws, b"ready-42", timeout=60)

    def send(self, data):
        self.ws.send(data)

    def recv(self, timeout=10):
        frame = self.ws.receive(timeout=timeout)
        while frame is not None and not isinstance(frame, bytes):
            frame = self.ws.receive(timeout=timeout)
        return frame or b""

    def close(self):
        self.ws.close()


class Direct:
    """A paramiko shell straight to sshd."""

    def __init__(self, sshd):
        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        self.client.connect(sshd.host, sshd.port, sshd.user, sshd.password, allow_agent=False, look_for_keys=False)
        self.chan = self.client.invoke_shell(width=80, height=24)
        self.chan.send(b"echo ready-$((6*7))\n")
        seen = b""
        while b"ready-42" not in seen:
            seen += self.chan.recv(65536)

    def send(self, data):
        self.chan.sendall(data)

    def recv(self, timeout=10):
        self.chan.settimeout(timeout)
        return self.chan.recv(65536)

    def close(self):
        self.client.close()


class OpenSSH:
    """OpenSSH's ssh client with a PTY (-tt), key auth."""

    def __init__(self, sshd):
        self.proc = subprocess.Popen(
            ["ssh", "-tt", "-q", "-i", str(sshd.key_path), "-p", str(sshd.port), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", f"{sshd.user}@127.0.0.1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.send(b"echo ready-$((6*7))\n")
        seen = b""
        while b"ready-42" not in seen:
            seen += self.recv()

    def send(self, data):
        self.proc.stdin.write(data)

    def recv(self, timeout=10):
        return self.proc.stdout.read1(65536) if hasattr(self.proc.stdout, "read1") else self.proc.stdout.read(65536)

    def close(self):
        self.proc.kill()
        self.proc.wait()


def throughput(term, megabytes):
    """Return MB/s of a large output through term."""
    n = megabytes * 1_000_000
    term.send(BULK.format(n=n * 3 // 4).encode())  # base64 turns 3 bytes into 4
    received, tail = 0, b""
    start = time.perf_counter()
    while True:
        chunk = term.recv()
        if not chunk:
            raise RuntimeError("output stopped")
        received += len(chunk)
        if MARK in tail + chunk:
            return received / (time.perf_counter() - start) / 1e6
        tail = chunk[-len(MARK):]


def echo_latency(term, keys, pause=0.02):
    """Type keys one at a time; return the echo latencies in ms."""
    samples = []
    for _ in range(keys):
        start = time.perf_counter()
        term.send(b"x")
        while b"x" not in term.recv():
            pass
        samples.append((time.perf_counter() - start) * 1000)
        time.sleep(pause)
    term.send(b"\x15")  # Ctrl-U: clear the typed line
    return samples


def typing(term, seconds, rate=8):
    """Type shell commands key by key for a while, as a person would, waiting for each echo."""
    lines = [b"ls -l /usr/bin | head -20\r", b"df -h\r", b"ps aux | head\r", b"uname -a\r", b"cat /etc/os-release\r"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in lines:
            for key in line:
                term.send(bytes([key]))
                term.recv()
                time.sleep(1 / rate)


# Real text, as `cat` of logs or sources gives it (the Python standard library of this machine).
CAT = "find /usr/lib/python3* -name '*.py' -size -300k 2>/dev/null | head -4000 | xargs cat; printf 'BENCH-%s\\n' DONE\n"


def cat_text(term):
    """Cat a few tens of MB of real text through term; return (MB, seconds)."""
    term.send(CAT.encode())
    received, tail = 0, b""
    start = time.perf_counter()
    while True:
        chunk = term.recv(timeout=60)
        if not chunk:
            raise RuntimeError("output stopped")
        received += len(chunk)
        if MARK in tail + chunk:
            return received / 1e6, time.perf_counter() - start
        tail = chunk[-len(MARK):]


def newest_recording(server):
    """Return the size in bytes of the newest stored recording of a server."""
    files = sorted((server.workdir / "recordings").glob("*.rec"), key=lambda p: p.stat().st_mtime)
    return files[-1].stat().st_size if files else 0


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_pid(server):
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    return int(children[0])


def crowd(server, http, device_id, count, seconds, rate=10):
    """Open count terminals, let each type `rate` keys a second; return latencies, lost, memory."""
    pid = worker_pid(server)
    before = rss_kib(pid)
    terms, lost = [], []

    def open_one():
        try:
            terms.append(Gateway(server, http, device_id))
        except Exception:  # a terminal that never opened counts as lost
            pass

    for start in range(0, count, 50):  # open in waves, as people would
        gevent.joinall([gevent.spawn(open_one) for _ in range(start, min(count, start + 50))], timeout=120)
    gevent.sleep(2)
    after = rss_kib(pid)
    samples = []

    def type_keys(term):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                term.send(b"x")
                while b"x" not in term.recv(timeout=10):
                    pass
            except Exception as exc:
                lost.append(repr(exc))
                return
            samples.append((time.perf_counter() - start) * 1000)
            gevent.sleep(max(0, 1 / rate - (time.perf_counter() - start)))

    gevent.joinall([gevent.spawn(type_keys, t) for t in terms], timeout=seconds + 60)
    for term in terms:
        term.close()
    per_terminal = (after - before) / max(1, len(terms)) / 1024
    return samples, (count - len(terms)) + len(lost), per_terminal


def main():
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--sizes", default="100,500")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--typing", type=int, default=30, help="seconds of typing for the recording size")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    sshd = SSHServer(work / "sshd", extra={"MaxSessions": "1000", "MaxStartups": "2000:100:2000"}).start()
    env = {"GATEHOUSE_ACCESS_LOG": "", "LOG_LEVEL": "WARNING", "SESSION_HEARTBEAT_SECONDS": "10",
           "WS_PING_SECONDS": "10", "SSH_CONNECT_TIMEOUT": "30"}
    server = LiveServer(work / "app", env=env).start()
    unrecorded = LiveServer(work / "app-off", env={**env, "RECORDING": "off"}).start()
    try:
        http, http_off = server.login(), unrecorded.login()
        device_id = server.add_device(http, sshd, "bench")
        device_off = unrecorded.add_device(http_off, sshd, "bench")
        print(f"{'path':<26} {'MB/s':>8} {'echo p50 ms':>12} {'echo p99 ms':>12}")
        for label, make in (("gateway, recording on", lambda: Gateway(server, http, device_id)),
                            ("gateway, recording off", lambda: Gateway(unrecorded, http_off, device_off)),
                            ("paramiko direct", lambda: Direct(sshd)), ("OpenSSH ssh", lambda: OpenSSH(sshd))):
            term = make()
            rate = throughput(term, args.mb)
            lat = echo_latency(term, args.keys)
            term.close()
            print(f"{label:<26} {rate:>8.1f} {percentile(lat, .5):>12.2f} {percentile(lat, .99):>12.2f}", flush=True)
        term = Gateway(server, http, device_id)
        megabytes, seconds = cat_text(term)
        term.close()
        gevent.sleep(1.5)
        stored = newest_recording(server)
        print(f"\nrecording size: cat of {megabytes:.1f} MB of text in {seconds:.1f} s: {stored / 1e6:.2f} MB stored"
              f" ({stored / megabytes / 1e3:.0f} kB per MB of output, {stored / seconds * 60 / 1e6:.1f} MB per minute"
              f" of cat)", flush=True)
        term = Gateway(server, http, device_id)
        typing(term, args.typing)
        term.close()
        gevent.sleep(1.5)
        stored = newest_recording(server)
        print(f"recording size: typing {stored * 60 / args.typing / 1e3:.1f} kB stored per minute"
              f" ({stored} bytes for {args.typing} s, ~8 keys/s)", flush=True)
        print(f"\n{'terminals':>9} {'recording':>9} {'keys':>7} {'echo p50 ms':>12} {'echo p99 ms':>12} {'lost':>5}"
              f" {'MiB/terminal':>13}")
        for size in (int(s) for s in args.sizes.split(",")):
            for label, target, session, device in (("on", server, http, device_id),
                                                   ("off", unrecorded, http_off, device_off)):
                samples, lost, per_terminal = crowd(target, session, device, size, args.seconds)
                print(f"{size:>9} {label:>9} {len(samples):>7} {percentile(samples, .5):>12.1f}"
                      f" {percentile(samples, .99):>12.1f} {lost:>5} {per_terminal:>13.3f}", flush=True)
                gevent.sleep(3)
    except Exception:
        print(server.log_text()[-3000:])
        raise
    finally:
        server.stop()
        unrecorded.stop()
        sshd.stop()


if __name__ == "__main__":
    main()
