"""Issue 20, F: names that lie. A name typed at the log-in form with a right-to-left override, a zero-width space or a
line separator is kept as typed in the hashed row, and shown everywhere with those characters made visible."""
import csv
import io
import json
import re
from datetime import timedelta

import pytest
from markupsafe import escape
from sqlalchemy import select, update

from app.audit.integrity import verify
from app.audit.models import AuditEvent
from app.auth.models import LoginThrottle
from app.dbtypes import now_utc
from app.extensions import db
from app.text import has_hidden, json_reveal, reveal, reveal_text
from tests.support import AuthActions, make_app

HIDDEN = (["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f",
           "\u061c"]  # bidi controls
          + ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]  # zero-width
          + ["\u2028", "\u2029", "\x00", "\x07", "\t", "\n", "\x7f", "\x85", "\u00ad", "\U000e0041"])  # others
LYING = {"\u202enimda": "\\u202enimda", "ad\u200bmin": "ad\\u200bmin", "ad\u2028min": "ad\\u2028min"}


@pytest.mark.parametrize("char", HIDDEN, ids=lambda c: f"U+{ord(c):04X}")
def test_each_hidden_character_is_shown_as_a_marked_escape(char):
    code = f"{ord(char):04x}" if ord(char) <= 0xFFFF else f"{ord(char):08x}"
    html = str(reveal(f"a{char}b"))
    assert char not in html and html.startswith('a<span class="hidden-char" title="U+') and html.endswith("</span>b")
    assert ("\\u" if len(code) == 4 else "\\U") + code in html
    assert reveal_text(f"a{char}b") == "a" + ("\\u" if len(code) == 4 else "\\U") + code + "b"
    assert json.loads(json_reveal(json.dumps(f"a{char}b", ensure_ascii=False))) == f"a{char}b"
    assert char not in json_reveal(json.dumps(f"a{char}b", ensure_ascii=False))


def test_ordinary_text_is_left_alone_and_escapes_cannot_be_faked():
    for text in ("José Müller", "名前 🙂", "web-prod-1 (10.0.0.1:22)", "a b"):
        assert not has_hidden(text) and reveal(text) == escape(text) and reveal_text(text) == text
    assert str(reveal("<b>\u202e")) == ('&lt;b&gt;<span class="hidden-char" title="U+202E RIGHT-TO-LEFT OVERRIDE">'
                                        '\\u202e</span>')
    # Typed as six letters, an escape is not marked on a page and keeps its backslash doubled in plain text.
    assert "hidden-char" not in str(reveal("\\u202e")) and reveal_text("\\u202e") == "\\\\u202e"


@pytest.fixture
def lying_app(tmp_path):
    """The app after a real failed log-in for each lying name; the first failure already makes a name wait."""
    app = make_app(tmp_path, LOGIN_MAX_FAILURES=1)
    client = app.test_client()
    for name in LYING:
        answer = AuthActions(client).login(name, "not-the-password").get_data(as_text=True)
        assert "Invalid username or password" in answer
    with app.app_context():  # the wait lasts a second: long enough to read the blocks page at leisure
        db.session.execute(update(LoginThrottle).where(LoginThrottle.kind == "account")
                           .values(blocked_until=now_utc() + timedelta(minutes=10)))
        db.session.commit()
    return app


def assert_revealed(html, names=LYING):
    """No lying character reaches what the page shows; each name shows with its marked escape."""
    shown = re.sub(r'<input type="hidden" name="key" value="[^"]*">', "", html)  # the Lift form sends the raw key
    for char in "\u202e\u200b\u2028":
        assert char not in shown
    for escaped in names.values():
        prefix, code, rest = re.match(r"(.*?)(\\u[0-9a-f]{4})(.*)", escaped).groups()
        assert re.search(re.escape(prefix) + r'<span class="hidden-char" title="U\+[0-9A-F]{4} [A-Z -]+">'
                         + re.escape(code) + "</span>" + re.escape(rest), html), escaped


def test_a_lying_name_keeps_its_raw_value_in_the_chain(lying_app):
    with lying_app.app_context():
        actors = db.session.scalars(select(AuditEvent.actor).where(AuditEvent.action == "auth.login_failed")
                                    .order_by(AuditEvent.id)).all()
        assert actors == list(LYING) and verify().ok


@pytest.mark.parametrize("path", ["/audit/rows", "/audit/?action=auth.login_failed", "/audit/?tab=summary",
                                  "/audit/summary", "/audit/?tab=review", "/users/blocks"])
def test_a_lying_name_is_shown_escaped_on_every_page(lying_app, path):
    admin = lying_app.test_client()
    AuthActions(admin).login()
    response = admin.get(path)
    assert response.status_code == 200
    assert_revealed(response.get_data(as_text=True))


def test_exports_show_a_lying_name_escaped_and_json_lines_keep_its_value(lying_app):
    admin = lying_app.test_client()
    AuthActions(admin).login()
    text = admin.get("/audit/export.csv?action=auth.login_failed").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["actor"] for row in rows] == list(reversed(LYING.values()))
    assert [row["message"] for row in rows] == [f"failed log in as {name}" for name in reversed(LYING.values())]
    lines = admin.get("/audit/export.jsonl?action=auth.login_failed").get_data(as_text=True)
    for char in "\u202e\u200b\u2028":
        assert char not in lines and char not in text
    assert len(lines.splitlines()) == len(LYING)  # U+2028 split no line
    assert [json.loads(line)["actor"] for line in lines.splitlines()] == list(reversed(LYING))  # the hashed values


def test_the_process_log_gets_a_lying_name_escaped(app, caplog):
    caplog.set_level("INFO", logger="gatehouse.audit")
    AuthActions(app.test_client()).login("\u202enim\u2028da", "not-the-password")
    logged = [r.getMessage() for r in caplog.records
              if r.name == "gatehouse.audit" and "login_failed" in r.getMessage()]
    assert logged and logged[-1].endswith("failed log in as \\u202enim\\u2028da")
    assert "actor=\\u202enim\\u2028da " in logged[-1] and "\u202e" not in caplog.text and "\u2028" not in caplog.text


def test_an_alert_about_a_lying_name_shows_it_escaped_and_parses_to_it(lying_app):
    from app.audit.alerts import payload

    with lying_app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.actor == "\u202enimda")).first()
        body = payload(event, {"PUBLIC_URL": "https://gatehouse.example.org"})
    assert b"\\u202enimda" in body and "\u202e".encode() not in body
    assert json.loads(body)["actor"] == "\u202enimda"  # what a receiver parses is the hashed value


def test_a_command_typed_with_hidden_characters_is_listed_escaped(app):
    import uuid

    from app.terminals import session_commands, session_rows
    from app.terminals.models import TerminalSession
    from app.terminals.session_events import SessionMetadata

    with app.app_context():
        row = TerminalSession(id=str(uuid.uuid4()), user_id=1, actor="admin", target="web1 (10.0.0.1:22)",
                              source_ip="127.0.0.1", worker="elsewhere:1", started_at=now_utc(), heartbeat_at=now_utc())
        db.session.add(row)
        db.session.commit()
        facts = SessionMetadata.of(row)
        session_commands.save_commands(facts, [(1.0, "echo \u202e;fr- mr")])
        session_rows.close_row(facts, "client_closed", 1, 2, now_utc())
    admin = app.test_client()
    AuthActions(admin).login()
    for path in (f"/sessions/{facts.id}", "/terminals/commands?command=echo"):
        html = admin.get(path).get_data(as_text=True)
        assert "\u202e" not in html and '<code>echo <span class="hidden-char" title="U+202E RIGHT-TO-LEFT OVERRIDE">' \
            '\\u202e</span>;fr- mr</code>' in html, path
