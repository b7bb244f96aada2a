"""Signals between rooms that must not import each other."""
from blinker import Namespace

_signals = Namespace()

# Sent by app.auth.logins when a log-in ends (log-out, revocation, password change, disabled or
# deleted user) with login_id and reason; the terminals of that log-in listen and close.
login_ended = _signals.signal("login-ended")

# The trail depends on nothing it records, so it reaches recordings only through the signals
# below: it asks and prints the answers, app.recording.retention answers. Signals rather than a hook
# registered on the app, because the terminals already listen here (login_ended) and an app without
# terminals then simply verifies and prunes the chain alone.

# Sent by `flask audit verify` with recordings=True|False; receivers return (verified count, [problems]) or None.
verify_requested = _signals.signal("verify-requested")

# Sent by app.audit.retention after a prune, with now and the events' cutoff; receivers prune what must
# go with the events (recordings) and return one line saying what went, or None.
audit_pruned = _signals.signal("audit-pruned")

# Sent by app.audit.bundle_writer while it writes an evidence bundle; receivers return a function that takes a
# session id and yields that session's plaintext asciicast piece by piece (raising when it cannot be read),
# or None. The bundle streams the pieces into its zip, so a 100 MB recording is never held whole.
recordings_requested = _signals.signal("recordings-requested")
