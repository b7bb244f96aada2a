"""The trail's command filter, answered by the package that keeps the commands: the events it keeps are those of the
sessions where a command containing the text was typed, by the filter's user within its time range, in a session
the viewer may read (session_commands.matching_commands: the command search's own query, so the two never disagree).
app.terminals.init_app hands sessions_with_command to app.audit.query.answer_commands."""
from .models import TerminalSession
from .session_commands import matching_commands


def sessions_with_command(user, filters):
    """Select the ids of the sessions user may read where a command matching the filters was typed."""
    return (matching_commands(user, filters.command, filters.user, filters.since, filters.until)
            .with_only_columns(TerminalSession.id).distinct())
