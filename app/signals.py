"""Signals between rooms that must not import each other."""
from blinker import Namespace

_signals = Namespace()

# Sent by app.auth.sessions when a log-in ends (log-out, revocation, password change, disabled or
# deleted user) with login_id and reason; the terminals of that log-in listen and close.
login_ended = _signals.signal("login-ended")

# Sent by `flask audit verify` with recordings=True|False; receivers return (verified count, [problems]) or None.
verify_requested = _signals.signal("verify-requested")

# Sent by app.audit.retention after a prune; receivers prune what must go with the events (recordings).
audit_pruned = _signals.signal("audit-pruned")
