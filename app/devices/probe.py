"""Test a connection step by step: reach, host key, authentication, shell; then close everything.

Nothing here knows Flask: the caller passes the credentials and the stored host key, if any. A key
that is not stored yet is reported, never trusted, so the first terminal still trusts it on first use.
"""
import socket
from dataclasses import dataclass

from .ssh import ConnectError, ShellRequest, fingerprint, open_shell

STEPS = ("reach", "host key", "authentication", "shell")
REACH_TIMEOUT = 5.0  # seconds for the TCP step alone: a test should answer quickly


@dataclass
class Step:
    """One step of a connection test: its name, whether it passed (None: not tried) and what happened."""

    name: str
    passed: bool | None = None
    message: str = ""


@dataclass(frozen=True)
class KnownKey:
    """A host key stored for host:port."""

    key_type: str
    key_base64: str
    fingerprint: str


def probe(host, port, username, *, password=None, pkey=None, known=None, timeout=10):
    """Try each step in order until one fails; return all four steps (those never tried have passed=None)."""
    steps = {name: Step(name) for name in STEPS}
    where = f"{host}:{port}"
    try:
        socket.create_connection((host, port), timeout=min(timeout, REACH_TIMEOUT)).close()
    except OSError as exc:
        reason = "refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or "no answer")
        _fail(steps["reach"], f"Cannot reach {where}: {reason}.")
        return list(steps.values())
    _pass(steps["reach"], f"{where} accepts TCP connections.")
    offered = {}

    def check(key):
        offered.update(fingerprint=fingerprint(key), key_type=key.get_name())
        if known is None:
            return  # reported below as a new key; nothing is stored
        if (known.key_type, known.key_base64) != (key.get_name(), key.get_base64()):
            raise ConnectError("host_key_mismatch", f"The host key changed: stored {known.key_type} "
                                                    f"{known.fingerprint}, offered {key.get_name()} {offered['fingerprint']}.")

    try:
        transport, channel, _ = open_shell(ShellRequest(host, port, username, password=password, pkey=pkey,
                                                        timeout=timeout, check_host_key=check))
    except ConnectError as exc:
        _record_failure(steps, exc, offered, known)
        return list(steps.values())
    try:
        channel.close()
    finally:
        transport.close()
    _host_key_passed(steps["host key"], offered, known)
    _pass(steps["authentication"], f"Logged in as {username}.")
    _pass(steps["shell"], "A shell opened (and was closed again).")
    return list(steps.values())


def _record_failure(steps, exc, offered, known):
    """Mark the step that connect() failed at, and the steps before it as passed."""
    if exc.reason == "host_key_mismatch" or not offered:  # a changed key, or no SSH handshake at all
        _fail(steps["host key"], exc.message)
        return
    _host_key_passed(steps["host key"], offered, known)
    if exc.reason == "auth_rejected":
        _fail(steps["authentication"], exc.message)
    else:
        _pass(steps["authentication"], "Logged in.")
        _fail(steps["shell"], exc.message)


def _host_key_passed(step, offered, known):
    """Mark the host-key step passed, saying whether the key is stored or new."""
    if known is None:
        _pass(step, f"new key {offered['key_type']} {offered['fingerprint']}: not stored yet; "
                    "the first terminal trusts it")
    else:
        _pass(step, f"matches the stored key {offered['key_type']} {offered['fingerprint']}")


def _pass(step, message):
    """Mark a step passed."""
    step.passed, step.message = True, message


def _fail(step, message):
    """Mark a step failed."""
    step.passed, step.message = False, message
