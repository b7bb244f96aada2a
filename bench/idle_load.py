"""The idle bench's load process: thousands of gateway terminals held open, one of them typing now and then.

Run by bench.idle (python -m bench.idle_load), never by hand: it reads one JSON plan on stdin, opens `count`
terminals through the gateway in waves of `wave` (bench.loadgen's client: every frame read as it arrives, pings
answered), prints {"opened": n} and waits for a line on stdin. Then for `seconds` one terminal of the crowd after
the other types a key every `every` s and the echo time is kept: the event loop's stalls as a user would feel them;
a control terminal (OpenSSH's ssh straight to the sshd) types at the same moments.
At the end every terminal types one key (all must echo: none dropped). It prints the samples, the terminals that
never opened or stopped answering, and its own CPU time, and closes everything.
"""
import asyncio
import json
import sys
import time

from bench.loadgen import Gateway, Shell, echo, main, open_all


async def probe(terms, control, seconds, every):
    """Type a key every `every` s, one terminal after the other, for seconds, and at the same moment one into the
    control (OpenSSH's ssh straight to sshd: what the machine's load alone costs); return [(offset s, echo ms,
    control's echo ms)]."""
    samples, start = [], time.monotonic()
    for turn in range(int(seconds / every)):
        await asyncio.sleep(max(0.0, start + turn * every - time.monotonic()))
        term = terms[turn * 7919 % len(terms)]  # a stride that is no divisor of the crowd: a new one each time
        term.drain()
        at = round(time.monotonic() - start, 3)
        both = await asyncio.gather(echo(term), echo(control), return_exceptions=True)
        failed = [exc for exc in both if isinstance(exc, BaseException)]
        if failed:  # a dropped terminal: the end check counts it
            print(f"probe at {at} s failed: {failed!r}", file=sys.stderr)
        else:
            samples.append((at, *both))
    return samples


async def still_held(terms, wave=200):
    """Have every terminal echo one key (wave at a time); return how many did not."""
    async def one(term):
        term.drain()
        await echo(term)
        await term.send(b"\x15")  # Ctrl-U clears the typed line

    failed = 0
    for start in range(0, len(terms), wave):
        outcomes = await asyncio.gather(*(one(t) for t in terms[start:start + wave]), return_exceptions=True)
        failed += sum(isinstance(o, BaseException) for o in outcomes)
    return failed


async def run(plan):
    """Carry out one plan (see the module's docstring); return what it measured."""
    opening = time.monotonic()
    control = await Shell.open(plan["direct"])
    terms = await open_all(Gateway, plan, plan["count"], wave=plan["wave"])
    print(json.dumps({"opened": len(terms), "open_seconds": time.monotonic() - opening}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu, wall = time.process_time(), time.monotonic()
    samples = await probe(terms, control, plan["seconds"], plan["every"]) if terms else []
    result = {"opened": len(terms), "samples": samples, "cpu": time.process_time() - cpu,
              "wall": time.monotonic() - wall}
    result["dropped"] = await still_held(terms)
    await asyncio.gather(control.close(), *(t.close() for t in terms), return_exceptions=True)
    return result


if __name__ == "__main__":
    main(run)
