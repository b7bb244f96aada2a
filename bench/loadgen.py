"""The terminal bench's load generator: a process of its own, asyncio, a minimal websocket client.

Run by bench.terminals (python -m bench.loadgen), never by hand: it reads one JSON plan on stdin, opens the
terminals it names (the gateway's websocket, or OpenSSH's ssh -tt), prints {"opened": n} and waits for a line
on stdin; then each terminal types a key every 1/rate s and waits for its echo. It prints the latencies, the
terminals lost and its own CPU time (and that of its ssh children), and closes everything.
"""
import asyncio
import json
import os
import sys
import time

from bench.wsclient import WebSocket

READY = b"echo ready-$((6*7))\n"
MARK = b"BENCH-DONE"
# The command spells the marker differently from its output, so its echo does not end the read.
BULK = "head -c {n} /dev/zero | base64 -w 160; printf 'BENCH-%s\\n' DONE\n"


class Shell:
    """OpenSSH's ssh client with a PTY (-tt), key auth, driven through pipes."""

    @classmethod
    async def open(cls, plan):
        """Start ssh and wait for the shell to answer."""
        self = cls()
        self.proc = await asyncio.create_subprocess_exec(
            "ssh", "-tt", "-q", "-i", plan["key"], "-p", str(plan["port"]), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", f"{plan['user']}@127.0.0.1",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        await self.ready()
        return self

    async def ready(self):
        """Ask the shell for a marker and read until it comes."""
        await self.send(READY)
        seen = b""
        while b"ready-42" not in seen:
            seen = seen[-16:] + await self.recv()

    def drain(self):
        """Forget output that came before now (none is kept here: the pipe holds it until read)."""

    async def send(self, data):
        """Type data."""
        self.proc.stdin.write(data)

    async def recv(self):
        """Return the next output; raise at the end."""
        data = await self.proc.stdout.read(65536)
        if not data:
            raise ConnectionError("ssh ended")
        return data

    async def close(self):
        """Stop ssh."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


class Gateway(Shell):
    """A terminal through the gateway's websocket."""

    @classmethod
    async def open(cls, plan):
        """Open the websocket and wait for the shell to answer."""
        self = cls()
        self.ws = await WebSocket.connect(plan["url"], {"Cookie": plan["cookie"], "Origin": plan["origin"]})
        self.inbox = asyncio.Queue()
        # Always reading, as a browser does: the server's pings are answered while nobody types.
        self.reader = asyncio.create_task(self._read())
        await self.ready()
        return self

    async def _read(self):
        """Put every output frame into the inbox (control messages are skipped); None once closed."""
        while True:
            opcode, payload = await self.ws.receive()
            if opcode is None:
                self.inbox.put_nowait(None)
                return
            if opcode == 2:
                self.inbox.put_nowait(payload)

    def drain(self):
        """Forget output that came before now."""
        while not self.inbox.empty():
            if self.inbox.get_nowait() is None:
                self.inbox.put_nowait(None)
                return

    async def send(self, data):
        """Type data (one binary frame)."""
        await self.ws.send(data)

    async def recv(self):
        """Return the next output frame; raise once the server closed."""
        data = await self.inbox.get()
        if data is None:
            self.inbox.put_nowait(None)
            raise ConnectionError("the server closed the terminal")
        return data

    async def close(self):
        """Close the websocket."""
        self.reader.cancel()
        await self.ws.close()


class Direct:
    """A paramiko shell straight to sshd (paramiko runs a thread per transport; the reads wait on the loop)."""

    @classmethod
    async def open(cls, plan):
        """Connect, open a shell, wait for it to answer."""
        import paramiko

        self = cls()
        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        await asyncio.to_thread(self.client.connect, "127.0.0.1", plan["port"], plan["user"], plan["password"],
                                allow_agent=False, look_for_keys=False)
        self.chan = self.client.invoke_shell(width=80, height=24)
        await Shell.ready(self)
        return self

    async def send(self, data):
        """Type data."""
        self.chan.sendall(data)

    async def recv(self):
        """Return the next output: wait on the channel's pipe (readable while data waits), then read."""
        if not (self.chan.recv_ready() or self.chan.closed or self.chan.eof_received):
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            loop.add_reader(self.chan.fileno(), lambda: ready.done() or ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(self.chan.fileno())
        data = self.chan.recv(65536)
        if not data:
            raise ConnectionError("the channel ended")
        return data

    def drain(self):
        """Forget output that came before now."""
        while self.chan.recv_ready():
            self.chan.recv(65536)

    async def close(self):
        """Close the connection."""
        self.client.close()


KINDS = {"gateway": Gateway, "ssh": Shell, "paramiko": Direct}


async def echo(term):
    """Type one key and return the ms until its echo came back."""
    start = time.perf_counter()
    await term.send(b"x")
    while b"x" not in await asyncio.wait_for(term.recv(), 15):
        pass
    return (time.perf_counter() - start) * 1000


async def typist(term, seconds, rate, samples):
    """Type a key every 1/rate s for seconds; raise when an echo never comes."""
    deadline = time.monotonic() + seconds
    await asyncio.sleep(1 / rate * (hash(id(term)) % 100) / 100)  # spread the keys over the interval
    term.drain()
    while time.monotonic() < deadline:
        start = time.monotonic()
        samples.append(await echo(term))
        await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - start)))
    await term.send(b"\x15")  # Ctrl-U clears the typed line


async def bulk(term, megabytes):
    """Return MB/s of a large output through term."""
    n = megabytes * 1_000_000
    await term.send(BULK.format(n=n * 3 // 4).encode())  # base64 turns 3 bytes into 4
    received, tail = 0, b""
    start = time.perf_counter()
    while True:
        chunk = await asyncio.wait_for(term.recv(), 60)
        received += len(chunk)
        if MARK in tail + chunk:
            return received / (time.perf_counter() - start) / 1e6
        tail = chunk[-len(MARK):]


def child_cpu():
    """Return the CPU seconds of this process's live children (the ssh clients)."""
    total = 0
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        for pid in open(f"/proc/{os.getpid()}/task/{task}/children").read().split():
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def open_all(kind, plan, count, wave=50):
    """Open count terminals in waves; return those that opened."""
    opened = []

    async def one():
        try:
            opened.append(await asyncio.wait_for(kind.open(plan), 120))
        except Exception as exc:  # a terminal that never opened counts as lost
            print(f"open failed: {exc!r}", file=sys.stderr)

    for start in range(0, count, wave):
        await asyncio.gather(*(one() for _ in range(start, min(count, start + wave))))
    return opened


async def run(plan):
    """Carry out one plan (see the module's docstring); return what it measured."""
    kind = KINDS[plan["kind"]]
    terms = await open_all(kind, plan, plan["count"])
    print(json.dumps({"opened": len(terms)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    result = {"opened": len(terms)}
    cpu, children = time.process_time(), child_cpu()
    wall = time.monotonic()
    if plan.get("megabytes"):
        result["mb_per_s"] = await bulk(terms[0], plan["megabytes"])
    else:
        samples = []
        outcomes = await asyncio.gather(*(typist(t, plan["seconds"], plan["rate"], samples) for t in terms),
                                        return_exceptions=True)
        result.update(samples=samples, lost=plan["count"] - len(terms) + sum(
            isinstance(o, BaseException) for o in outcomes))
    result.update(cpu=time.process_time() - cpu, child_cpu=child_cpu() - children, wall=time.monotonic() - wall)
    await asyncio.gather(*(t.close() for t in terms), return_exceptions=True)
    return result


def main(carry_out=run):
    """Read the plan, carry it out (run, or another bench's coroutine), print the result as the last line."""
    plan = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(carry_out(plan))), flush=True)


if __name__ == "__main__":
    main()
