"""Session recordings: where they are kept (store), their encrypted file format (chunks), the recorder
that writes one terminal's (recorder) and how long they are kept and how they are checked (retention).

store, chunks and recorder know no Flask; only retention, which reads the trail, needs the app.
The live terminal (app.terminals.live) records, the session pages (app.terminals.session_pages) read.
"""


def init_app(app):
    """Make recordings answer the trail's verify, prune and bundle signals."""
    # Imported here, not at the top: retention needs Flask and the database, and importing the
    # package (for the recorder or the file format) must not pull them in.
    from . import retention

    retention.connect_signals()
