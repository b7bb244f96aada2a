"""The commands typed in terminal sessions, in the database: stored as the recorder finds them, listed, searched.

app.terminals.commands finds them on the screen; this module keeps and finds them again. The command
search and the trail's command filter (command_filter.py) both read matching_commands(), so the two
never disagree.
"""
from datetime import timedelta

from sqlalchemy import func, insert, select

from app.access import readable_sessions
from app.audit.search_index import contains
from app.extensions import db

from .models import SessionCommand, TerminalSession


def save_commands(metadata, commands):
    """Store commands found in a session: [(offset in seconds, text)]."""
    with db.engine.begin() as conn:
        conn.execute(insert(SessionCommand), [
            {"session_id": metadata.id, "occurred_at": metadata.started_at + timedelta(seconds=offset),
             "offset_s": offset, "text": text} for offset, text in commands])


def commands_of(session_id):
    """Return the commands typed in a session, in the order they were typed."""
    return db.session.scalars(select(SessionCommand).where(SessionCommand.session_id == session_id)
                              .order_by(SessionCommand.offset_s, SessionCommand.id)).all()


def matching_commands(user, text, actor="", since=None, until=None):
    """Select (session, command) of the commands containing text (any case) that user may read (another user's open
    session keeps its commands until it ends: app.access.readable_sessions). The command search and the trail's
    command filter (app/terminals/command_filter.py) both read this, so the two never disagree."""
    query = (readable_sessions(user).add_columns(SessionCommand)
             .join(SessionCommand, SessionCommand.session_id == TerminalSession.id)
             .where(contains(text, SessionCommand.text)))
    if actor:
        query = query.where(TerminalSession.actor == actor)
    if since:
        query = query.where(SessionCommand.occurred_at >= since)
    if until:
        query = query.where(SessionCommand.occurred_at <= until)
    return query


def find_commands(user, text, actor="", since=None, until=None, limit=50):
    """Return (total, [(command, session)]) of commands containing text (any case) that user may read, newest first."""
    query = matching_commands(user, text, actor, since, until)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = db.session.execute(query.order_by(SessionCommand.occurred_at.desc(), SessionCommand.id.desc())
                              .limit(limit)).all()
    return total, [(command, session) for session, command in rows]
