"""Why and how a terminal session is asked to end: the reasons in words, and the flags that end sessions.

Asking a terminal to end is a database flag, from anywhere (an admin, a log-in that ended, a grant, a device or a
user that went): request_end() sets terminate_requested on its row and says so on the cluster bus (END_CHANNEL), so
the process that holds it closes it at once (app.terminals.registry.end_requested); its once-a-second look at the
flags is the fallback. The first reason asked for wins. This module reads only models and
the access rules, so auth, devices and teams end terminals without importing app.terminals.

The reasons in words are the one table the audit trail and the session page both read; it lives outside app.audit
and app.terminals: the trail shows what terminals record without importing them, and terminals (or anything else
that ends a session: log-ins, grants, devices, users) add a reason here, once. The terminal tab's own sentences
(app/terminals/messages.py END_MESSAGES) speak to the user; these speak about the session, to whoever reads the trail.
"""
from dataclasses import dataclass

from sqlalchemy import and_, exists, or_, select, update

from app import cluster
from app.access import usable_by
from app.devices.models import Device
from app.extensions import db
from app.terminals.models import TerminalSession

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


def init_app(app):
    """Make describe_end available to every template (the trail's sentences and badges, the session page)."""
    app.add_template_global(describe_end, "describe_end")


# Asking sessions to end.

_NOT_ASKED_YET = TerminalSession.terminate_requested.is_(False)  # an earlier reason (say, user_deleted) stays
END_CHANNEL = "session-end"  # {"ids": [...]} flags were set on these sessions ({"ids": null}: on many)
_IDS_PER_MESSAGE = 150  # 36-character ids: more do not fit in one NOTIFY, and then every holder looks


def request_end(reason, *conditions):
    """Flag the open sessions matching conditions to end with reason; return their ids."""
    with db.engine.begin() as conn:
        ids = list(conn.scalars(select(TerminalSession.id).where(TerminalSession.ended_at.is_(None), *conditions)))
        if ids:
            conn.execute(update(TerminalSession).where(TerminalSession.id.in_(ids), TerminalSession.ended_at.is_(None))
                         .values(terminate_requested=True, terminate_reason=reason))
    if ids:  # after the commit: the holder reads the flag it is told about
        cluster.publish(END_CHANNEL, {"ids": ids if len(ids) <= _IDS_PER_MESSAGE else None})
    return ids


def end_sessions_without_access(reason="access_revoked"):
    """Flag every open terminal whose user may no longer use its device (a grant, a team, a folder or tag went);
    return their ids. Their holders close them within a second, the tab saying why."""
    allowed = exists(select(Device.id).where(and_(Device.id == TerminalSession.device_id,
                                                  usable_by(TerminalSession.user_id))))
    return request_end(reason, ~allowed)


def end_login(login_id, reason):
    """Flag every open terminal of a log-in that ended; return their ids."""
    return request_end(reason, TerminalSession.login_session_id == login_id)


def end_deviceless():
    """Flag every open terminal whose device was deleted (reason device_deleted); return how many.

    A terminal connects with its device owner's stored credentials: with the device (or its owner, which deletes
    their devices) gone, every terminal on it ends, whoever typed in it.
    """
    return len(request_end("device_deleted", TerminalSession.device_id.is_(None), _NOT_ASKED_YET))


def end_on_devices_of(owner_id, reason="owner_disabled"):
    """Flag the open terminals of other users on the devices of owner_id (reason owner_disabled); return how many.

    The owner's own terminals end with their log-ins (user_disabled).
    """
    others = or_(TerminalSession.user_id.is_(None), TerminalSession.user_id != owner_id)
    devices = select(Device.id).where(Device.owner_id == owner_id)
    return len(request_end(reason, TerminalSession.device_id.in_(devices), others, _NOT_ASKED_YET))
