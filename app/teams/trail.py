"""The trail's rule for shared devices: a member reads the events of sessions on them where the grant says so."""
from sqlalchemy import exists, select

from app.access import shared_device_ids
from app.audit.models import AuditEvent
from app.audit.query import extend_visibility
from app.extensions import db
from app.terminals.models import TerminalSession


def sessions_on_shared_devices(user_id):
    """Select the ids of the terminal sessions on devices whose trail a grant shares with the user's teams."""
    return select(TerminalSession.id).where(TerminalSession.device_id.in_(shared_device_ids(user_id, trail_only=True)))


@extend_visibility
def shared_sessions(user):
    """Let a member read the events of sessions on devices a trail-sharing grant covers (None: no such grant)."""
    if not db.session.scalar(select(exists(shared_device_ids(user.id, trail_only=True)))):
        return None  # the usual case keeps the viewer's query as simple as before
    return AuditEvent.session_id.in_(sessions_on_shared_devices(user.id))
