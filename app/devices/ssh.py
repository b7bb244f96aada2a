"""Reach a device over SSH: dial, check its host key, authenticate, open a shell; failures as ConnectError.

Nothing here knows Flask. A terminal pumps the opened shell (app.terminals.bridge); the connection test
opens one and closes it again (probe.py). Under gunicorn's gevent worker the socket is cooperative.
"""
import base64
import hashlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko


class ConnectError(Exception):
    """A session could not be opened: reason goes to the audit trail, message to the terminal."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ShellRequest:
    """Where and as whom to open a shell, with which credential, how the host key is checked (a callable that raises
    ConnectError), how patient to be and the PTY's size: one value for a terminal and for the connection test."""

    host: str
    port: int
    username: str
    password: str | None = field(default=None, repr=False)  # never in a log line
    pkey: paramiko.PKey | None = field(default=None, repr=False)
    check_host_key: Callable[[paramiko.PKey], None] | None = None
    timeout: float = 10  # seconds for each step: TCP, handshake, authentication, the shell
    keepalive: float = 15  # seconds between SSH keepalives
    size: tuple[int, int] = (80, 24)  # columns and rows


def fingerprint(key):
    """Return the SHA256 fingerprint of a host key as OpenSSH prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def open_shell(request):
    """Open a transport, check the host key, authenticate and start a login shell; return (transport, channel, key)."""
    host, port, username, timeout = request.host, request.port, request.username, request.timeout
    where = f"{host}:{port}"
    if request.password is None and request.pkey is None:  # an imported device: nothing is dialled, nothing trusted
        raise ConnectError("no_credentials", f"No credentials stored for {username}@{where}: set them in Edit.")
    transport = paramiko.Transport(_dial(host, port, timeout))
    transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
    try:
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectError("unreachable", f"No SSH handshake with {where} within {timeout} s "
                                              f"({exc or 'no answer'}).") from None
        key = transport.get_remote_server_key()
        if request.check_host_key:
            request.check_host_key(key)  # raises ConnectError before any credential is sent
        _authenticate(transport, where, username, request.password, request.pkey)
        transport.set_keepalive(request.keepalive)
        try:
            channel = transport.open_session(timeout=timeout)
            channel.get_pty(term="xterm-256color", width=request.size[0], height=request.size[1])
            channel.invoke_shell()
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectError("error", f"{where} refused a shell: {exc}.") from None
    except BaseException:  # a refused key, a failed check, a kill: never leave the transport open
        transport.close()
        raise
    return transport, channel, key


def _dial(host, port, timeout):
    """Open the TCP connection (no Nagle: keystrokes go out at once) or raise ConnectError."""
    where = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        raise ConnectError("refused", f"Connection to {where} refused: is sshd running on that port?") from None
    except socket.timeout:
        raise ConnectError("unreachable", f"{where} did not answer within {timeout} s.") from None
    except OSError as exc:
        raise ConnectError("unreachable", f"Cannot reach {where}: {exc.strerror or exc}.") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _authenticate(transport, where, username, password, pkey):
    """Log in with the key when there is one, else the password; raise ConnectError("auth_rejected") if refused."""
    try:
        if pkey is not None:
            transport.auth_publickey(username, pkey)
        else:
            transport.auth_password(username, password or "")
    except paramiko.BadAuthenticationType as exc:
        raise ConnectError("auth_rejected", f"{where} does not accept this kind of authentication "
                                            f"(it offers: {', '.join(exc.allowed_types)}).") from None
    except (paramiko.AuthenticationException, paramiko.SSHException):
        raise ConnectError("auth_rejected", f"Authentication as {username} on {where} was rejected.") from None
