"""Signals between rooms that must not import each other."""
from blinker import Namespace

_signals = Namespace()

# Sent by app.auth.sessions when a log-in ends (log-out, revocation, password change, disabled or
# deleted user) with login_id and reason; the terminals of that log-in listen and close.
login_ended = _signals.signal("login-ended")
