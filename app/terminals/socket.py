"""The terminal websocket: a short loop around LiveTerminal (login, Origin and device are checked
in the blueprint's before_request, because flask-sock accepts the upgrade before this runs)."""
from flask import current_app, g, request
from flask_login import current_user

from app.access import current_login
from app.extensions import sock

from .live import LiveTerminal
from .views import bp


@sock.route("/terminals/<int:device_id>/ws", bp=bp)
def ws(websocket, device_id):
    """Run one terminal from connect to close."""
    terminal = LiveTerminal(websocket, current_user._get_current_object(), g.device, request.remote_addr,
                            current_login(), current_app.config)
    if terminal.open():
        terminal.run()
