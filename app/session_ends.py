"""Why a terminal session ended, in words: the one table the audit trail and the session page both read.

It lives outside app.audit and app.terminals: the trail shows what terminals record without importing them, and
terminals (or anything else that ends a session: log-ins, grants, devices, users) add a reason here, once.
The terminal tab's own sentences (app/terminals/live.py END_MESSAGES) speak to the user; these speak about the
session, to whoever reads the trail.
"""
from dataclasses import dataclass

# How a session ended: its user (or their shell) chose to, it was lost (nobody chose it), or something cut it off
# (an admin, a rule, a restart). Only the first looks like an ordinary end.
ENDED, LOST, CUT = "ended", "lost", "cut"
BADGES = {ENDED: "Session ended", LOST: "Session lost", CUT: "Session cut off"}


@dataclass(frozen=True)
class End:
    """One way a session ends: the words after "stopped session with X —" and its kind (ended, lost, cut)."""

    code: str
    words: str
    kind: str

    @property
    def look(self):
        """Return "ok" for an ordinary end, "warning" for one that was lost or cut off."""
        return "ok" if self.kind == ENDED else "warning"

    @property
    def badge(self):
        """Return the badge's label: Session ended, Session lost or Session cut off."""
        return BADGES[self.kind]

    @property
    def sentence(self):
        """Return the words as a sentence of their own, for the session page."""
        return self.words[:1].upper() + self.words[1:] + "."


# reason code (terminal_sessions.end_reason, session.ended's details.reason) -> (words, kind)
END_REASONS = {
    # Ended by the person at the terminal (or their shell): the ordinary ends.
    "remote_exit": ("the shell on the device exited", ENDED),
    "client_closed": ("the tab was closed", ENDED),
    "logged_out": ("the user logged out", ENDED),
    "ended_by_user": ("the user ended their log-in from the list of active log-ins", ENDED),
    # Lost: nobody chose it.
    "disconnected": ("the network was lost", LOST),
    "lost": ("the server holding it stopped answering", LOST),
    "remote_stuck": ("the device stopped reading input", LOST),
    "protocol_error": ("the browser broke the terminal protocol", LOST),
    "recording_failed": ("its recording could not be written", LOST),
    "error": ("an error in Gatehouse ended it", LOST),
    # Cut off: by someone else, a rule, or a restart.
    "server_restart": ("the server restarted", CUT),
    "terminated": ("an admin ended it", CUT),
    "ended_by_admin": ("an admin ended the user's log-in", CUT),
    "access_revoked": ("access was revoked", CUT),
    "device_deleted": ("the device was deleted", CUT),
    "owner_disabled": ("the device's owner was disabled", CUT),
    "user_disabled": ("the account was disabled", CUT),
    "user_deleted": ("the account was deleted", CUT),
    "password_changed": ("the password was changed", CUT),
    "second_factor_changed": ("the user's second factor was set up or removed", CUT),
    "login_expired": ("the log-in expired", CUT),
    "expired": ("the log-in ended after a time without activity", CUT),
}


def add_reason(code, words, kind=CUT):
    """Name a further end reason in words (for a package that ends sessions for a reason of its own)."""
    END_REASONS[code] = (words, kind)


def describe_end(reason):
    """Return the End of a reason code; a code nobody named reads as itself, cut off."""
    if not reason:
        return None
    words, kind = END_REASONS.get(str(reason), (f"for a reason this version does not name ({reason})", CUT))
    return End(str(reason), words, kind)


def register(app):
    """Make describe_end available to every template (the trail's sentences and badges, the session page)."""
    app.add_template_global(describe_end, "describe_end")
