"""Free text through an index: the viewer's search over the trail and the command filter.

On SQLite an FTS5 trigram table beside each searched table (migration 0015, kept by triggers) finds the candidate
rows; on PostgreSQL pg_trgm's GIN indexes serve the ILIKE itself. Either way the same case-insensitive substring
condition as a plain scan decides, so an index changes how fast, never what is found. A term shorter than a
trigram gets no help from either index: it is the plain scan.
"""
from sqlalchemy import column, func, literal, literal_column, or_, select, table

from app.extensions import db

MIN_INDEXED = 3  # characters: a trigram
# The FTS5 table that indexes each searched table on SQLite (migration 0015_search_index).
FTS_TABLES = {"audit_events": "audit_search", "session_commands": "command_search"}
# What the migration adds outside the models, for schema comparisons to leave alone.
INDEX_OBJECTS = frozenset(FTS_TABLES.values()) | frozenset(
    f"{name}_{part}" for name in FTS_TABLES.values() for part in ("data", "idx", "docsize", "config")) | {
    "ix_audit_events_message_trgm", "ix_audit_events_target_trgm", "ix_session_commands_text_trgm"}


def escape_like(text):
    """Make %, _ and the backslash literal in a LIKE pattern (the pattern then needs ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def fts_phrase(text):
    """Quote text as one FTS5 string: every character literal (", *, NEAR, OR, - and the rest are not syntax)."""
    return '"' + text.replace('"', '""') + '"'


_FTS = {}  # one selectable per FTS5 table: a query that joins it and orders by its rowid names the same object


def _index_for(searched, text):
    """Return the FTS5 table (a selectable) that can find text in searched's rows, or None when none can help."""
    name = FTS_TABLES.get(searched.name)
    if name is None or len(text) < MIN_INDEXED or db.session.get_bind().dialect.name != "sqlite":
        return None
    return _FTS.setdefault(name, table(name, column("rowid")))


def _substring(text, columns):
    """Return the plain condition: one of columns contains text, in any case, every character literal."""
    pattern = f"%{escape_like(text)}%"
    return or_(*(col.ilike(pattern, escape="\\") for col in columns))


def _match(index, text):
    """Return the FTS5 condition "the index holds text, as one literal phrase"."""
    return literal_column(index.name).op("MATCH")(literal(fts_phrase(text)))


def contains(text, *columns, probe=False):
    """Return the condition "one of columns (of one table) contains text, in any case", through the index if any.

    probe: another condition of the query has a selective index of its own; SQLite then starts from that index and
    probes the matches for each of its rows, instead of reading every match's row (its plan's default)."""
    searched = columns[0].expression.table
    index = _index_for(searched, text)
    if index is None:
        return _substring(text, columns)
    # The unary + keeps SQLite from looking the matches up by their id: it starts from the other index.
    key = literal_column(f"+{searched.name}.id") if probe else searched.c.id
    return key.in_(select(index.c.rowid).where(_match(index, text))) & _substring(text, columns)


def narrow(query, text, *columns):
    """Add "one of columns contains text" to a select, joining the FTS5 index where it helps (see newest_first)."""
    searched = columns[0].expression.table
    index = _index_for(searched, text)
    if index is None:
        return query.where(_substring(text, columns))
    return query.join(index, index.c.rowid == searched.c.id).where(_match(index, text), _substring(text, columns))


def newest_first(text, searched):
    """Return the newest-first order of a select that narrow() narrowed: the FTS5 rowid, so SQLite reads the index
    backwards and stops at the page's end instead of sorting every match."""
    index = _index_for(searched, text)
    return (searched.c.id if index is None else index.c.rowid).desc()


def folds_like_sqlite(text):
    """Say whether FTS5's case folding finds exactly what SQLite's ASCII-only lower() and LIKE find, for text.

    FTS5 folds case across Unicode; for an ASCII term the two agree, but that FTS5 also folds U+212A (Kelvin sign)
    into k and U+017F (long s) into s (tests/test_audit_search.py checks that list against every character)."""
    return text.isascii() and not set(text.lower()) & {"k", "s"}


def count_alone(text, searched):
    """Count the rows of searched that contain text from the FTS5 index alone when that is exact, else None."""
    index = _index_for(searched, text)
    if index is None or not folds_like_sqlite(text):
        return None
    return db.session.scalar(select(func.count()).select_from(index).where(_match(index, text)))


def include_object(obj, name, type_, reflected, compare_to):
    """Leave the search index out of schema comparisons (Alembic's include_object): it is not in the models."""
    return not (reflected and compare_to is None and name in INDEX_OBJECTS)
