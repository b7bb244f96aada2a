"""The terminal websocket: a short loop around LiveTerminal (login, Origin and device are checked
in the blueprint's before_request, because flask-sock accepts the upgrade before this runs)."""
import threading
import time

from flask import current_app, g, request
from flask_login import current_user

from app.access import current_login
from app.extensions import sock

from .live import LiveTerminal
from .views import bp


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

    def set(self):
        """Wake the receiver; then wait while the connection holds too much unread input."""
        self._event.set()
        while self.connection is not None and self.connection.connected and _too_much(self.connection.input_buffer):
            time.sleep(0.01)

    def wait(self, timeout=None):
        """Wait for a frame (or the close)."""
        return self._event.wait(timeout)

    def clear(self):
        """Forget the last wake-up."""
        self._event.clear()

    def is_set(self):
        """Say whether a wake-up is pending."""
        return self._event.is_set()


def _too_much(frames):
    """Say whether the unread frames pass either limit (the count first: summing stays cheap)."""
    return len(frames) > MAX_UNREAD_FRAMES or sum(map(len, frames)) > MAX_UNREAD_BYTES


@sock.route("/terminals/<int:device_id>/ws", bp=bp)
def ws(websocket, device_id):
    """Run one terminal from connect to close."""
    if isinstance(websocket.event, InputGate):
        websocket.event.connection = websocket
    terminal = LiveTerminal(websocket, current_user._get_current_object(), g.device, request.remote_addr,
                            current_login(), current_app.config)
    if terminal.open():
        terminal.run()
