"""A TCP forwarder on loopback whose network can be unplugged: cut() drops every connection without a word (no
websocket close frame either way), and while it is down new connections are closed at once; freeze() keeps the
connections open but carries nothing (a network gone quiet: no error on either side, just silence)."""
import socket
import threading


class NetCut:
    """Forward 127.0.0.1:port to a target port on loopback until close()."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = False
        self.flowing = threading.Event()
        self.flowing.set()
        self._pairs, self._lock = [], threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        """Take connections and forward each both ways (or close it at once while down)."""
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            server = socket.create_connection(self.target, timeout=10)
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=_copy, args=(a, b, self.flowing), daemon=True).start()

    def cut(self, down=True):
        """Unplug: drop every connection (RST, no close frame) and, with down, refuse new ones until plug()."""
        self.down = down
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    sock.close()
                except OSError:
                    pass

    def freeze(self):
        """Let the network go quiet: connections stay open, nothing passes, new connections are refused."""
        self.down = True
        self.flowing.clear()

    def plug(self):
        """Plug the network back in (what a freeze held back is dropped with its connections)."""
        if not self.flowing.is_set():
            self.cut(down=False)
            self.flowing.set()
        self.down = False

    def close(self):
        """Stop forwarding."""
        self.cut()
        self.listener.close()


def _copy(source, sink, flowing):
    """Copy bytes one way until either side closes; hold them while the network is frozen."""
    try:
        while data := source.recv(65536):
            flowing.wait()
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
