"""Terminals: the main page, the websocket a terminal runs on, its SSH bridge, its session rows and events.

One live terminal is one object (live.py) owning bridge, recorder and watchers; the process keeps its
live terminals in registry.py. Rows and the session.* events are in session_rows.py and session_events.py,
the orphan sweep in orphans.py, typed commands in commands.py (found) and session_commands.py (kept), a
session's page, its .cast and the command search in session_pages.py. Nothing under bridge.py knows Flask.
"""


def init_app(app):
    """Wire the terminals into app: the blueprint with its pages and websocket routes, the trail's command
    filter, and the receivers that end terminals with their log-in."""
    from app.audit.query import answer_commands
    from app.metrics import read_at_scrape

    from . import broadcast, files, registry, session_pages, websocket  # noqa: F401  (they add their routes to the blueprint)
    from .command_filter import sessions_with_command
    from .orphans import open_counts
    from .views import bp

    app.register_blueprint(bp)
    answer_commands(sessions_with_command)
    registry.init_app(app)
    read_at_scrape("gatehouse_sessions_open", "Open terminal sessions of the whole cluster, attached to a browser "
                   "or detached (kept for a resume)", open_counts, label="state")
