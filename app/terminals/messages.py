"""What a terminal's tab says: why a session was refused or ended, what the browser's close code means, and what
a control message from the browser asks."""
import json

AUDIT_DOWN = "The audit trail cannot be written; the session is refused."
RECORDING_DOWN = "Recordings cannot be written; the session is refused."
NODE_FULL = ("This server holds as many terminals as it can take ({limit}); the session is refused. "
             "Close a terminal or try again later.")
# What the tab says when a session ends for a reason the user did not see coming.
END_MESSAGES = {
    "terminated": "An admin ended this session.",
    "access_revoked": "Your access to this device was revoked.",
    "device_deleted": "This device was deleted; the session has ended.",
    "owner_disabled": "The owner of this device was disabled; their stored credentials can no longer be used.",
    "logged_out": "You logged out in another window.",
    "password_changed": "Your password was changed; this log-in has ended.",
    "second_factor_changed": "Your second factor was set up or removed; log-ins from before it have ended.",
    "login_expired": "Your log-in session expired; log in again.",
    "expired": "Your log-in expired after a time without activity; log in again.",
    "ended_by_user": "This log-in was ended from the active log-ins list.",
    "ended_by_admin": "An admin ended your log-in.",
    "user_disabled": "Your account was disabled.",
    "user_deleted": "Your account was deleted.",
    "server_restart": "The server is restarting.",
    "remote_stuck": "The device stopped reading input.",
    "disconnected": "The connection to the device was lost.",
}
# Close codes from the browser (RFC 6455) that leave the session to be resumed: none received or abnormal (the
# network dropped), going away (a reload, a closed window) and 4000 (the page found the socket quiet and reconnects).
NO_CLOSE_FRAME = (1001, 1005, 1006, None, 4000)
PROTOCOL_ERRORS = (1002, 1003, 1007, 1009)
_MAX_CONTROL = 4096  # a resize message is ~50 bytes; anything longer is not one


def control_message(kind, message=None, **extra):
    """Return a JSON control message for the browser."""
    return json.dumps({"type": kind, "message": message, **extra})


def parse_control(text):
    """Read a control message from the browser: None for a ping, (cols, rows) for a resize; ValueError otherwise."""
    if len(text) > _MAX_CONTROL:
        raise ValueError("control message too long")
    try:
        message = json.loads(text)
    except RecursionError:
        raise ValueError("control message nested too deep") from None
    if isinstance(message, dict) and message.get("type") == "ping":
        return None
    if not isinstance(message, dict) or message.get("type") != "resize":
        raise ValueError("unknown control message")
    cols, rows = message.get("cols"), message.get("rows")
    if not (type(cols) is int and type(rows) is int and 1 <= cols <= 1000 and 1 <= rows <= 1000):
        raise ValueError("resize needs whole numbers cols and rows between 1 and 1000")
    return cols, rows


def client_reason(code):
    """Map the browser's close code to an end reason."""
    if code in NO_CLOSE_FRAME:
        return "disconnected"
    return "protocol_error" if code in PROTOCOL_ERRORS else "client_closed"


def closing_words(exit_code, reason, note=""):
    """Return the sentence a tab shows when its session ends (note: an admin's reason for ending it)."""
    if exit_code is not None:
        return f"Session closed (exit status {exit_code})."
    words = END_MESSAGES.get(reason, "Session closed.")
    return f"{words.rstrip('.')}: {note}" if note else words
