"""Free text through the search index (FTS5 on SQLite, pg_trgm on PostgreSQL): the same results as the plain
substring scan for what people type, wildcards and FTS5 syntax searched literally, the index kept through inserts,
tampering and retention, and a migration that fills it, leaves the chain alone and downgrades."""
import sqlite3
import string
import uuid
from datetime import timedelta
from unittest import mock

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import or_, select, text

from app.audit import search_index
from app.audit.events import record
from app.audit.integrity import verify
from app.audit.models import AuditEvent
from app.audit.query import apply_filters, parse_filters, search, visible_events
from app.audit.retention import prune
from app.auth.models import User
from app.dbtypes import now_utc
from app.extensions import db
from app.terminals.models import SessionCommand, TerminalSession
from app.terminals.session_commands import find_commands, matching_commands, save_commands

MESSAGES = [
    "created device web42 (10.0.0.42:22)",
    "100% of the disk on db_1 is full",
    "copied 100 files to db-1 and dbX1",
    'said "hello" to the NEAR OR gate',
    "ran rm -rf /tmp/* as root",
    "NEAR(alpha beta) and alpha OR beta",
    "message:secret and col:x",
    "Ünïcode ÉTÉ café",
    "été in small letters",
    "back\\slash path C:\\temp",
    "it's a quote's test",
    "^caret start {braces} +plus",
    "20 \u212a (Kelvin sign) at the \u017ftation",  # characters that FTS5 folds into ASCII (k, s), lower() does not
]
# What people type, and what they should not be able to make the search do: LIKE wildcards, FTS5 phrases, prefixes,
# operators, column filters, groups; terms of one and two characters that no trigram index can help.
TERMS = ["web42", "WEB42", "%", "100%", "_", "db_1", "db-1", '"', '"hello"', 'hello" OR "root', "NEAR", "NEAR OR",
         "alpha OR beta", "OR", "*", "/tmp/*", "web*", "rm -rf", "-rf", "-", "message:secret", "col:", "(alpha",
         "NEAR(alpha beta)", "ÉTÉ", "été", "Ün", "é", "caf", "\\", "C:\\temp", "x", "'", "it's", "^caret", "{braces}",
         "+plus", "a", "zz-nowhere", "d w", "db%1", "db_", "20 k", "20 K", "the st", "the \u017ft", "\u212a (kel"]


def seed(app):
    """Record the tricky messages (each also its event's target) through the trail's one write path."""
    with app.app_context():
        for message in MESSAGES:
            record("device.created", message, actor="admin", user_id=1, target=message[::-1])


def admin_user():
    return db.session.scalar(select(User).where(User.username == "admin"))


def found(term):
    """Return the ids the viewer's free-text filter finds (through the index where one helps)."""
    f = parse_filters({"q": term, "size": "200"})
    assert not f.errors, f.errors
    page = search(f, admin_user())
    assert page.total == len(page.rows), term  # the count, however it is taken, agrees with the rows
    return {row.id for row in page.rows}


def scanned(term):
    """Return the ids the plain substring scan finds: ILIKE over message and target, no index allowed."""
    pattern = f"%{search_index.escape_like(term)}%"
    query = select(AuditEvent.id).where(or_(AuditEvent.message.ilike(pattern, escape="\\"),
                                            AuditEvent.target.ilike(pattern, escape="\\")))
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL enable_bitmapscan = off"))
        db.session.execute(text("SET LOCAL enable_indexscan = off"))
    ids = set(db.session.scalars(query))
    db.session.rollback()
    return ids


def ids_of(*messages):
    return set(db.session.scalars(select(AuditEvent.id).where(AuditEvent.message.in_(messages))))


def test_the_index_finds_what_the_plain_scan_finds(any_app):
    seed(any_app)
    with any_app.app_context():
        for term in TERMS:
            assert found(term) == scanned(term), term


@pytest.mark.parametrize("other", [{"user": "admin"}, {"action": "device.created"}, {"action": "devices"},
                                   {"outcome": "success"}, {"severity": "info"}, {"ip": "10.9.8.7"}])
def test_beside_other_filters_the_index_finds_what_the_plain_scan_finds(any_app, other):
    seed(any_app)
    with any_app.app_context():
        record("device.created", "created device web42 from elsewhere", actor="ops", source_ip="10.9.8.7")
        for term in ("web42", "db_1", '"hello"', "%", "zz-nowhere", "the st"):
            page = search(parse_filters({"q": term, "size": "200", **other}), admin_user())
            wanted = {row.id for row in search(parse_filters(other | {"size": "200"}), admin_user()).rows}
            assert {row.id for row in page.rows} == scanned(term) & wanted, (term, other)
            assert page.total == len(page.rows)


def test_wildcards_and_fts5_syntax_are_searched_literally(any_app):
    seed(any_app)
    with any_app.app_context():
        assert found("%") == ids_of("100% of the disk on db_1 is full")  # not every event
        assert found("db_1") == ids_of("100% of the disk on db_1 is full")  # not db-1 nor dbX1
        assert found("_") == ids_of("100% of the disk on db_1 is full")
        assert found('"hello"') == ids_of('said "hello" to the NEAR OR gate')
        assert found("alpha OR beta") == ids_of("NEAR(alpha beta) and alpha OR beta")  # the words, in order
        assert found("NEAR(alpha beta)") == ids_of("NEAR(alpha beta) and alpha OR beta")
        assert found("/tmp/*") == ids_of("ran rm -rf /tmp/* as root")
        assert found("message:secret") == ids_of("message:secret and col:x")  # not a column filter
        assert found('hello" OR "root') == set()  # a quote cannot close the phrase and open an operator
        assert found("web*") == set()  # not a prefix search: no event says "web*"
        assert found("-rf") == ids_of("ran rm -rf /tmp/* as root")  # not a NOT
        assert found("C:\\temp") == ids_of("back\\slash path C:\\temp")
        assert found("WEB42") == ids_of("created device web42 (10.0.0.42:22)")  # any case, as before
        assert found("24bew") == ids_of("created device web42 (10.0.0.42:22)")  # the (reversed) target is searched


def test_fts5_folds_into_ascii_only_what_the_exact_count_expects():
    """FTS5 counts a term alone only when its case folding agrees with SQLite's: check every character against it."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='trigram')")
    conn.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", [
        (code, f"q{chr(code)}q") for code in range(128, 0x110000) if not 0xD800 <= code <= 0xDFFF])
    folded = {letter for letter in string.printable[:95] if conn.execute(
        "SELECT 1 FROM t WHERE t MATCH ?", (search_index.fts_phrase(f"q{letter}q"),)).fetchone()}
    conn.close()
    assert {letter.lower() for letter in folded} == {"k", "s"}
    assert not search_index.folds_like_sqlite("disk") and not search_index.folds_like_sqlite("été")
    assert search_index.folds_like_sqlite("web42") and search_index.folds_like_sqlite('10.0.0.7%"')


def plan(statement):
    """Return the database's plan of a select, as text."""
    dialect = db.session.get_bind().dialect
    sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    if dialect.name == "sqlite":
        return " | ".join(row[-1] for row in db.session.execute(text("EXPLAIN QUERY PLAN " + sql)))
    db.session.execute(text("SET LOCAL enable_seqscan = off"))  # a table of a dozen rows is scanned otherwise
    lines = " | ".join(db.session.scalars(text("EXPLAIN " + sql)))
    db.session.rollback()
    return lines


def test_three_characters_and_more_go_through_the_index_shorter_ones_are_scanned(any_app):
    seed(any_app)
    with any_app.app_context():
        user = admin_user()
        plans = {term: plan(apply_filters(visible_events(user), parse_filters({"q": term}), user))
                 for term in ("web", "100%", "é", "db")}
        beside_user = plan(apply_filters(visible_events(user), parse_filters({"q": "web", "user": "admin"}), user))
        commands = plan(matching_commands(user, "tail -f"))
    sqlite = any_app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
    used = "audit_search VIRTUAL TABLE INDEX" if sqlite else "ix_audit_events_message_trgm"
    assert used in plans["web"] and used in plans["100%"], plans
    assert ("command_search VIRTUAL TABLE INDEX" if sqlite else "ix_session_commands_text_trgm") in commands, commands
    if sqlite:  # beside a user, SQLite starts from the user's index and probes the matches
        assert "USING INDEX ix_audit_events_actor_id" in beside_user and "audit_search" in beside_user, beside_user
    if sqlite:  # PostgreSQL's planner may still choose its index for a short term; it cannot be told apart there
        assert "audit_search" not in plans["é"] + plans["db"], plans


def test_the_index_follows_tampering_and_retention(any_app):
    seed(any_app)
    with any_app.app_context():
        marked = ids_of("ran rm -rf /tmp/* as root")
        db.session.execute(text("UPDATE audit_events SET message = 'ran shred -u /etc/shadow' WHERE id = :id"),
                           {"id": min(marked)})
        db.session.commit()
        assert found("shred -u") == marked and found("rm -rf") == set()  # what the row says now
        assert not verify().ok  # the chain still sees the change: the index is no part of it
        db.session.execute(text("UPDATE audit_events SET message = 'ran rm -rf /tmp/* as root' WHERE id = :id"),
                           {"id": min(marked)})
        db.session.commit()
        assert verify().ok
        result = prune(now=now_utc() + timedelta(days=any_app.config["AUDIT_RETENTION_DAYS"] + 1))
        assert result.count >= len(MESSAGES)
        record("device.created", "created device web42 again", actor="admin")
        assert found("web42") == ids_of("created device web42 again")
        assert found("rm -rf") == set() == scanned("rm -rf")
        check_fts(any_app)


def check_fts(app):
    """On SQLite, have FTS5 compare each index with its table (it raises when they disagree)."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    for index in search_index.FTS_TABLES.values():
        db.session.execute(text(f"INSERT INTO {index}({index}, rank) VALUES ('integrity-check', 1)"))
    db.session.commit()


def session_with(commands):
    """Store a session of the admin's with these commands typed in it; return its id."""
    session_id = str(uuid.uuid4())
    db.session.add(TerminalSession(id=session_id, user_id=1, actor="admin", target="web1 (10.0.0.1:22)", worker="h:1",
                                   started_at=now_utc(), ended_at=now_utc()))
    db.session.commit()
    save_commands(db.session.get(TerminalSession, session_id), [(i, line) for i, line in enumerate(commands)])
    return session_id


def test_the_command_filter_finds_what_the_plain_scan_finds(any_app):
    with any_app.app_context():
        session_with(MESSAGES[:6])
        session_with(MESSAGES[6:])
        for term in TERMS:
            _total, matches = find_commands(admin_user(), term, limit=100)
            pattern = f"%{search_index.escape_like(term)}%"
            with mock.patch.dict(search_index.FTS_TABLES, clear=True):
                plain = set(db.session.scalars(select(SessionCommand.id).where(
                    SessionCommand.text.ilike(pattern, escape="\\"))))
            assert {command.id for command, _session in matches} == plain, term
        _total, matches = find_commands(admin_user(), "/tmp/*")
        assert [command.text for command, _session in matches] == ["ran rm -rf /tmp/* as root"]
        check_fts(any_app)


def test_deleting_a_session_row_takes_its_commands_out_of_the_index(app):
    with app.app_context():
        db.session.execute(text("PRAGMA foreign_keys = ON"))
        session_id = session_with(["tail -f /var/log/syslog"])
        db.session.delete(db.session.get(TerminalSession, session_id))
        db.session.commit()
        assert find_commands(admin_user(), "syslog") == (0, [])
        check_fts(app)


def index_objects():
    """Return the names of the search index's tables, triggers and indexes in the database."""
    if db.session.get_bind().dialect.name == "sqlite":
        names = db.session.scalars(text("SELECT name FROM sqlite_master WHERE name LIKE '%search%'"))
    else:
        names = db.session.scalars(text("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%trgm'"))
    return set(names)


def test_the_migration_fills_the_index_leaves_the_chain_alone_and_downgrades(any_app):
    seed(any_app)
    with any_app.app_context():
        made = index_objects()
        assert len(made) == (16 if any_app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite") else 3), made
        flask_migrate.downgrade(revision="0014_resume_and_files")
        assert index_objects() == set()
        record("device.created", "created device before-the-index", actor="admin")  # no index to keep now
        hashes = db.session.execute(select(AuditEvent.id, AuditEvent.hash)).all()
        flask_migrate.upgrade()
        assert index_objects() == made
        assert db.session.execute(select(AuditEvent.id, AuditEvent.hash)).all() == hashes
        assert verify().ok
        assert found("before-the-index") == ids_of("created device before-the-index")
        if any_app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):  # the FTS table itself holds the row
            assert db.session.scalar(text("SELECT count(*) FROM audit_search WHERE audit_search MATCH "
                                          "'\"before-the-index\"'")) == 1
        check_fts(any_app)


def test_schema_comparisons_leave_the_index_alone_and_only_it(any_app):
    """What tests/test_migrations.py and autogenerate compare: the models, and the index beside them left out."""
    import app.models  # noqa: F401  (every table in the metadata)

    with any_app.app_context(), db.engine.connect() as conn:
        everything = compare_metadata(MigrationContext.configure(conn), db.metadata)
        left_out = compare_metadata(MigrationContext.configure(
            conn, opts={"include_object": search_index.include_object}), db.metadata)
    assert left_out == []
    assert {diff[1].name for diff in everything} == index_objects_named(any_app)


def index_objects_named(app):
    """Return the tables (SQLite) or indexes (PostgreSQL) of the index that a comparison sees."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return {f"{name}{part}" for name in search_index.FTS_TABLES.values()
                for part in ("", "_data", "_idx", "_docsize", "_config")}
    return {"ix_audit_events_message_trgm", "ix_audit_events_target_trgm", "ix_session_commands_text_trgm"}
