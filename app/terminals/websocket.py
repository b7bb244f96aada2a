"""The terminal websocket: a short loop around LiveTerminal (login, Origin and device are checked
in the blueprint's before_request, because flask-sock accepts the upgrade before this runs)."""
import json
import threading
import time

from flask import current_app, g, request
from flask_login import current_user

from app.access import current_login
from app.audit.events import AuditWriteError
from app.extensions import sock

from . import registry, relay, resuming
from .live import LiveTerminal
from .messages import AUDIT_DOWN
from .views import bp
from .watching import Watcher


# Frames a browser may have sent that the terminal has not taken yet: beyond these, stop reading.
MAX_UNREAD_BYTES = 1024 * 1024
MAX_UNREAD_FRAMES = 1024


class InputGate:
    """The websocket's "a frame arrived" event, which also holds the reader back while frames wait unread.

    simple_websocket's reader thread reads the socket on its own, appends every frame to the
    connection's input_buffer and then calls set(); waiting there while too much is unread stops
    reading the socket, so TCP pushes back on the browser instead of the worker's memory growing.
    Used as SOCK_SERVER_OPTIONS["event_class"]; the route binds it to its connection.
    """

    def __init__(self):
        self._event = threading.Event()
        self.connection = None
        self._interrupted = False

    def set(self):
        """Wake the receiver; then wait while the connection holds too much unread input."""
        self._event.set()
        while self.connection is not None and self.connection.connected and _too_much(self.connection.input_buffer):
            time.sleep(0.01)

    def wait(self, timeout=None):
        """Wait for a frame (or the close); after interrupt(), say nothing came, so receive() returns None at once."""
        woke = self._event.wait(timeout)
        if self._interrupted:
            self._interrupted = False
            return False
        return woke

    def interrupt(self):
        """End the receiver's wait now with nothing received: its loop looks at once at a session asked to end."""
        self._interrupted = True
        self._event.set()

    def clear(self):
        """Forget the last wake-up."""
        self._event.clear()

    def is_set(self):
        """Say whether a wake-up is pending."""
        return self._event.is_set()


def _too_much(frames):
    """Say whether the unread frames pass either limit (the count first: summing stays cheap)."""
    return len(frames) > MAX_UNREAD_FRAMES or sum(map(len, frames)) > MAX_UNREAD_BYTES


def _size(args):
    """Return the terminal size a browser asked for (?cols=&rows=), or 80x24 when absent or nonsense."""
    cols, rows = args.get("cols", type=int), args.get("rows", type=int)
    if cols is None or rows is None or not (1 <= cols <= 1000 and 1 <= rows <= 1000):
        return 80, 24
    return cols, rows


def _bind(websocket):
    """Let the connection's input gate see its unread frames."""
    if isinstance(websocket.event, InputGate):
        websocket.event.connection = websocket


def _window():
    """Return the id the page gave its browser window (?window=), so a reload finds its own tabs."""
    return (request.args.get("window") or "")[:64] or None


@sock.route("/terminals/<int:device_id>/ws", bp=bp)
def ws(websocket, device_id):
    """Run one terminal from connect to close."""
    _bind(websocket)
    terminal = LiveTerminal(websocket, current_user._get_current_object(), g.device, request.remote_addr,
                            current_login(), current_app.config, size=_size(request.args), window=_window())
    if terminal.open():
        terminal.run()


@sock.route("/terminals/sessions/<session_id>/ws", bp=bp)
def resume_ws(websocket, session_id):
    """Attach the owner's browser again to a session kept open (after a lost network or a reload); a session
    another process or node holds is resumed through it (app.terminals.resume_relay)."""
    _bind(websocket)
    login = current_login()
    login = (login.id, login.expires_at) if login else (None, None)  # read before the database session goes
    terminal = resuming.terminal_to_resume(websocket, session_id)
    if terminal is None:
        return
    source = request.remote_addr, request.user_agent.string[:200]
    try:
        terminal.resume(websocket, login, source, request.args.get("offset", 0, type=int), _window())
        terminal.resize_to(_size(request.args))
    except AuditWriteError:
        websocket.send(json.dumps({"type": "error", "message": AUDIT_DOWN, "reason": "audit"}))
        return
    terminal.serve(websocket)


@sock.route("/sessions/<session_id>/watch/ws", bp=bp)
def watch_ws(websocket, session_id):
    """Show an open terminal to an admin as it happens, read-only (admin and Origin checked before the upgrade);
    a session another process or node holds is relayed from it (app.terminals.relay)."""
    terminal = registry.find(session_id)
    login = current_login()
    watcher = Watcher(current_user.username, user_id=current_user.id, login_id=login.id if login else None)
    if terminal is None:
        relay.serve_elsewhere(websocket, session_id, watcher)
        return
    try:
        terminal.watch(watcher)
    except AuditWriteError:
        websocket.send(json.dumps({"type": "error", "message": relay.AUDIT_REFUSES}))
        return
    try:
        watcher.run(websocket)
    finally:
        terminal.unwatch(watcher)
