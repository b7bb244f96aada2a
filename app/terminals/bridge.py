"""The SSH side of a terminal: connect, then pump bytes between a paramiko channel and a sender.

Nothing here knows Flask. Under gunicorn's gevent worker the sockets and threads below are
cooperative; under plain threads they work the same.
"""
import base64
import hashlib
import logging
import socket
import threading

import paramiko

log = logging.getLogger("gatehouse.bridge")

READ_CHUNK = 64 * 1024


class ConnectError(Exception):
    """A session could not be opened: reason goes to the audit trail, message to the terminal."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
        self.message = message


def fingerprint(key):
    """Return the SHA256 fingerprint of a host key as OpenSSH prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def connect(host, port, username, *, password=None, pkey=None, timeout=10, keepalive=15,
            check_host_key=None, cols=80, rows=24):
    """Open a transport, check the host key, authenticate and start a login shell; return a Bridge."""
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
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
    try:
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectError("unreachable", f"No SSH handshake with {where} within {timeout} s "
                                              f"({exc or 'no answer'}).") from None
        key = transport.get_remote_server_key()
        if check_host_key:
            check_host_key(key)  # raises ConnectError before any credential is sent
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
        transport.set_keepalive(keepalive)
        try:
            channel = transport.open_session(timeout=timeout)
            channel.get_pty(term="xterm-256color", width=cols, height=rows)
            channel.invoke_shell()
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectError("error", f"{where} refused a shell: {exc}.") from None
    except BaseException:  # a refused key, a failed check, a kill: never leave the transport open
        transport.close()
        raise
    return Bridge(transport, channel, fingerprint(key), key.get_name())


class Bridge:
    """One SSH channel and its transport; close(reason) acts once and the first reason wins."""

    def __init__(self, transport, channel, host_fingerprint, host_key_type):
        self.transport = transport
        self.channel = channel
        self.host_fingerprint = host_fingerprint
        self.host_key_type = host_key_type
        self.bytes_in = 0  # browser -> device
        self.bytes_out = 0  # device -> browser
        self.reason = None
        self.exit_code = None
        self.closed = threading.Event()
        self._lock = threading.Lock()

    def write(self, data):
        """Send keystrokes or a paste to the remote shell."""
        if self.closed.is_set():
            return
        try:
            self.channel.sendall(data)
            self.bytes_in += len(data)
        except (OSError, EOFError, paramiko.SSHException):
            self.close("disconnected")

    def resize(self, cols, rows):
        """Tell the remote PTY its new size (the remote program gets SIGWINCH)."""
        if not self.closed.is_set():
            try:
                self.channel.resize_pty(width=cols, height=rows)
            except (OSError, EOFError, paramiko.SSHException):
                self.close("disconnected")

    def pump(self, send):
        """Forward remote output to send(bytes) until the channel ends; then close."""
        reason = "remote_exit"
        try:
            while True:
                data = self.channel.recv(READ_CHUNK)
                if not data:
                    break
                self.bytes_out += len(data)
                send(data)
        except Exception as exc:  # the browser side is gone, or the network to the device
            reason = "disconnected" if not self.closed.is_set() else self.reason
            log.debug("pump ended: %r", exc)
        if reason == "remote_exit":
            # The exit status may trail the end of output by a moment; without one the link died.
            if self.channel.status_event.wait(1.0) and self.channel.exit_status >= 0:
                self.exit_code = self.channel.exit_status
            elif not self.transport.is_active():
                reason = "disconnected"
        self.close(reason)

    def close(self, reason):
        """Close channel and transport once; the first reason given is kept."""
        with self._lock:
            if self.closed.is_set():
                return
            self.reason = reason
            self.closed.set()
        try:
            self.channel.close()
        finally:
            self.transport.close()
