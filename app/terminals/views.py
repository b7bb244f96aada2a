"""The main page (devices and terminal tabs), the terminal websocket and the host-key list."""
import json
import threading

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from simple_websocket import ConnectionClosed
from sqlalchemy import select

from app.audit.events import AuditWriteError
from app.auth.users import admin_required
from app.blocking import run_blocking
from app.devices import keys, secrets
from app.devices.models import AUTH_KEY
from app.devices.views import get_device_or_404, user_devices
from app.extensions import db, sock

from . import hostkeys, registry
from .bridge import ConnectError, connect
from .models import HostKey

bp = Blueprint("terminals", __name__)

AUDIT_DOWN = "The audit trail cannot be written; the session is refused."
# A close frame from the browser carries a code; a dropped network or unanswered pings leave none.
_NO_CLOSE_FRAME = (1005, 1006, None)  # RFC 6455: no status received, abnormal closure


@bp.before_request
@login_required
def check_access():
    """Refuse cross-site websocket upgrades and other users' devices before the upgrade happens."""
    if request.endpoint == "terminals.ws":
        origin = request.headers.get("Origin", "")
        if origin.rstrip("/") != request.host_url.rstrip("/"):
            abort(403, "Cross-origin terminal connections are refused.")
        get_device_or_404(request.view_args["device_id"])


@bp.get("/")
def index():
    """Show the device panel and the terminal tabs."""
    return render_template("terminals/index.html", devices=user_devices())


def _credentials(device):
    """Return password and private key of a device, decrypted (key parsing off the event loop)."""
    try:
        if device.auth_type != AUTH_KEY:
            return secrets.decrypt(device.password_enc, "password"), None
        text = secrets.decrypt(device.private_key_enc, "private_key")
        passphrase = secrets.decrypt(device.passphrase_enc, "passphrase")
        return None, run_blocking(keys.load_private_key, text, passphrase)
    except secrets.SecretError as exc:
        raise ConnectError("credentials_unreadable", f"The stored credentials cannot be read: {exc}") from None
    except keys.KeyProblem as exc:
        raise ConnectError("bad_passphrase" if "passphrase" in str(exc) else "credentials_unreadable",
                           f"The stored key cannot be used: {exc}") from None


def _status(send, kind, message, **extra):
    """Send a JSON control message to the browser."""
    send(json.dumps({"type": kind, "message": message, **extra}))


def _control(bridge, text, send):
    """Apply one JSON control message; answer nonsense with an error message, never a crash."""
    try:
        message = json.loads(text)
        if not isinstance(message, dict) or message.get("type") != "resize":
            raise ValueError("unknown control message")
        cols, rows = message.get("cols"), message.get("rows")
        if not (type(cols) is int and type(rows) is int and 1 <= cols <= 1000 and 1 <= rows <= 1000):
            raise ValueError("resize needs whole numbers cols and rows between 1 and 1000")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        _status(send, "error", f"ignored control message: {str(exc)[:120]}")
        return
    bridge.resize(cols, rows)


@sock.route("/terminals/<int:device_id>/ws", bp=bp)
def ws(websocket, device_id):
    """Run one terminal: connect to the device, pump bytes both ways, record start and end."""
    device = get_device_or_404(device_id)
    user = current_user._get_current_object()
    source_ip = request.remote_addr
    config = current_app.config
    lock = threading.Lock()

    def send(data):
        with lock:  # the pump and this loop both write to the socket
            websocket.send(data)

    _status(send, "status", f"Connecting to {device.label}…")
    try:
        password, pkey = _credentials(device)
        db.session.remove()  # hold no database connection across network waits
        bridge = connect(device.host, device.port, device.username, password=password, pkey=pkey,
                         timeout=config["SSH_CONNECT_TIMEOUT"], keepalive=config["SSH_KEEPALIVE_SECONDS"],
                         check_host_key=hostkeys.checker(device, user.username))
    except ConnectError as exc:
        registry.fail(user, device, exc.reason, exc.message)
        _status(send, "error", exc.message, reason=exc.reason)
        return
    except AuditWriteError:  # trusting a new host key could not be recorded
        _status(send, "error", AUDIT_DOWN, reason="audit")
        return
    try:
        live = registry.begin(user, device, source_ip, bridge)
    except AuditWriteError:  # fail closed: no unaudited session
        bridge.close("error")
        _status(send, "error", AUDIT_DOWN, reason="audit")
        return
    db.session.remove()  # hold no database connection for the session's lifetime
    try:
        _status(send, "status", "connected", host_key=bridge.host_fingerprint, host_key_type=bridge.host_key_type,
                session=live.id)
        pump = threading.Thread(target=bridge.pump, args=(send,), daemon=True)
        pump.start()
        while not bridge.closed.is_set():
            message = websocket.receive(timeout=1)
            if message is None:
                continue
            if isinstance(message, bytes):
                bridge.write(message)
            else:
                _control(bridge, message, send)
        status = bridge.exit_code
        _status(send, "closed", "Session closed" + (f" (exit status {status})." if status is not None else "."),
                reason=bridge.reason)
    except ConnectionClosed:
        bridge.close("disconnected" if websocket.close_reason in _NO_CLOSE_FRAME else "client_closed")
    finally:
        bridge.close("error")  # no-op unless something above failed unexpectedly
        registry.end(live, bridge.reason)


@bp.get("/terminals/hostkeys")
@admin_required
def host_keys():
    """List the trusted host keys."""
    rows = db.session.scalars(select(HostKey).order_by(HostKey.host, HostKey.port)).all()
    return render_template("terminals/hostkeys.html", host_keys=rows)


@bp.post("/terminals/hostkeys/<int:key_id>/forget")
@admin_required
def forget_host_key(key_id):
    """Forget a stored host key (the next connection trusts the key it is offered)."""
    row = db.session.get(HostKey, key_id) or abort(404)
    hostkeys.forget(row)
    flash(f"Forgot the host key of {row.host}:{row.port}.", "info")
    return redirect(url_for("terminals.host_keys"))
