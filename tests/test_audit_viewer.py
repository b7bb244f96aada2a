"""The audit viewer: partial, filters, pagination, escaping, exports, visibility, live browser."""
import csv
import io
import json
import re
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.audit.events import record
from app.audit.models import AuditEvent
from app.dbtypes import now_utc
from app.extensions import db
from app.terminals.models import TerminalSession
from tests.support import ADMIN_PASSWORD, browser_login, live_events, logged_in_user, wait_for


def count(app, action):
    with app.app_context():
        return db.session.scalar(select(func.count()).where(AuditEvent.action == action))


def seed(app, n=30):
    """Write n varied events: failed log-ins from two addresses, device and session events."""
    with app.app_context():
        for i in range(n):
            if i % 3 == 0:
                record("auth.login_failed", f"failed log in as user{i}", outcome="failure", actor=f"user{i}",
                       source_ip="10.0.0.1")
            elif i % 3 == 1:
                record("device.created", f"created device web{i} (10.0.0.{i}:22)", actor="admin", user_id=1,
                       target=f"web{i} (10.0.0.{i}:22)", source_ip="2001:db8::7")
            else:
                record("session.ended", f"stopped session with web{i} (10.0.0.{i}:22)", actor="admin", user_id=1,
                       target=f"web{i} (10.0.0.{i}:22)", source_ip="10.0.0.2", details={"reason": "client_closed"})


def body(response):
    return response.get_data(as_text=True)


def test_partial_lists_newest_first_with_total(app, admin):
    seed(app)
    response = admin.get("/audit/rows")
    assert response.status_code == 200
    html = body(response)
    assert "<html" not in html and 'id="audit-results"' in html
    total = count(app, "auth.login_failed") + count(app, "device.created") + count(app, "session.ended") + \
        count(app, "auth.login") + count(app, "user.created")
    assert f"{total} events, page 1 of 1" in html
    # A session's end carries how it ended, in words, after its message.
    messages = re.findall(r"<td>((?:failed log in|created device|stopped session)[^<]*?)"
                          r"(?: <span class=\"end-words\">— the tab was closed</span>)?</td>", html)
    assert messages[0] == "stopped session with web29 (10.0.0.29:22)" and messages[-1] == "failed log in as user0"
    assert 'hx-trigger="every 5s, refresh"' in html


@pytest.mark.parametrize("query,expected", [
    ("action=auth.login_failed", 10),
    ("action=sessions", 10),
    ("action=devices&outcome=success", 10),
    ("outcome=failure", 10),
    ("severity=warning", 10),
    ("severity=critical", 0),
    ("severity=notice-up", 21),  # the failed log-ins, the devices and the first admin's creation
    ("severity=warning-up&action=devices", 0),
    ("ip=2001:0db8:0:0::7", 10),  # normalised like the stored address
    ("user=user3", 1),
    ("q=web2", 8),  # web2, web20..web29 but not the failed log-ins: text over message and target
    ("q=100%25", 0),  # a literal %, not a wildcard
    ("user=%27%20OR%201%3D1%20--", 0),  # an injected filter value is only a value
])
def test_filters(app, admin, query, expected):
    seed(app)
    html = body(admin.get("/audit/rows?" + query))
    assert re.search(rf"\b{expected} events?\b", html), html[:2000]
    assert f"rows?{query.split('&')[0].split('=')[0]}=" in html or expected == 0 or "ip=" in query


def test_time_range_and_pagination(app, admin, monkeypatch):
    from app.audit import events

    base = now_utc().replace(microsecond=0) - timedelta(hours=10)
    with app.app_context():
        for i in range(60):
            monkeypatch.setattr(events, "now_utc", lambda i=i: base + timedelta(minutes=i))
            record("auth.logout", f"user logged out #{i}", actor="admin")
    monkeypatch.undo()
    since = (base + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (base + timedelta(minutes=39)).strftime("%Y-%m-%dT%H:%M:%S")  # no zone: UTC
    html = body(admin.get(f"/audit/rows?action=auth.logout&since={since}&until={until}&size=25&page=2"))
    assert "30 events, page 2 of 2" in html
    assert re.findall(r"user logged out #(\d+)", html) == [str(n) for n in range(14, 9, -1)]
    polled = re.search(r'id="audit-results"[^>]*hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert "page=2" in polled and "size=25" in polled and "action=auth.logout" in polled  # a poll keeps them


@pytest.mark.parametrize("query,message", [
    ("action=auth.teleport", "is neither an action code nor a group"),
    ("outcome=maybe", "must be success or failure"),
    ("severity=loud", "must be one of info, notice, warning, critical, notice-up, warning-up"),
    ("ip=999.1.1.1", "is not an IP address"),
    ("ip=10.0.0.0/8", "is not an IP address"),
    ("since=yesterday", "is not a time"),
    ("since=2026-11-24T10:00:00Z&until=2026-11-24T09:00:00Z", "since must be before until"),
    ("size=7", "must be one of 25, 50, 100, 200"),
    ("page=0", "must be a whole number"),
    ("page=-1", "must be a whole number"),
    ("page=abc", "must be a whole number"),
    ("q=" + "x" * 201, "longer than 200"),
])
def test_invalid_filters_get_a_clear_message(app, admin, query, message):
    for path in ("/audit/rows", "/audit/", "/audit/panel"):
        response = admin.get(f"{path}?{query}")
        assert response.status_code == 422
        assert message in body(response)
    export = admin.get(f"/audit/export.csv?{query}")
    assert export.status_code == 422 and message in body(export)


def test_hostile_text_is_escaped(app, client, auth):
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    auth.login(hostile[:64], "whatever-password")
    auth.login()
    with app.app_context():
        record("device.created", f"created device {hostile}", actor="admin", target=hostile)
    html = body(client.get("/audit/rows"))
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_viewed_once_per_opening_not_per_poll(app, admin):
    before = count(app, "audit.viewed")
    admin.get("/audit/")
    admin.get("/audit/panel?action=sessions")
    for _ in range(3):
        admin.get("/audit/rows")
    assert count(app, "audit.viewed") == before + 2
    with app.app_context():
        last = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.viewed")
                                  .order_by(AuditEvent.id.desc())).first()
    assert last.details == {"filters": {"action": "sessions"}}


FORMULAS = ["=HYPERLINK(\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def test_csv_export_neutralises_formulas(app, admin):
    with app.app_context():
        for text in FORMULAS:
            record("auth.login_failed", text, outcome="failure", actor=text)
    response = admin.get("/audit/export.csv?action=auth.login_failed")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment;" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body(response))))
    # Quoted; the tab and the carriage return are hidden characters, so they show as escapes too (app/text.py).
    shown = ["'" + text.replace("\t", "\\u0009").replace("\r", "\\u000d") for text in reversed(FORMULAS)]
    assert [r["actor"] for r in rows] == shown and "'\\u0009TAB" in shown
    assert [r["message"] for r in rows] == shown
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["occurred_at"]) for r in rows)
    with app.app_context():
        exported = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.exported")).one()
    assert exported.details == {"format": "csv", "filters": {"action": "auth.login_failed"},
                                "rows": len(FORMULAS), "complete": True}


def test_jsonl_export_streams_every_matching_row(app, admin):
    seed(app, 2400)  # more than two export batches
    response = admin.get("/audit/export.jsonl?action=devices")
    assert response.is_streamed
    lines = [json.loads(line) for line in body(response).splitlines()]
    assert len(lines) == 800 and all(r["action"] == "device.created" for r in lines)
    assert [r["id"] for r in lines] == sorted((r["id"] for r in lines), reverse=True)
    assert lines[0]["occurred_at"].endswith("Z") and len(lines[0]["hash"]) == 64
    assert count(app, "audit.exported") == 1


def test_export_format_must_be_known(admin):
    assert admin.get("/audit/export.xlsx").status_code == 404


def test_a_user_sees_only_their_own_events_an_admin_all(app, admin):
    other = logged_in_user(app, "bob")
    seed(app, 6)
    mine = body(other.get("/audit/rows"))
    assert "user logged in" in mine and "created device" not in mine and "failed log in as user0" not in mine
    assert "created device" in body(admin.get("/audit/rows"))


def test_connected_now_lists_open_sessions(app, admin):
    with app.app_context():
        db.session.add(TerminalSession(id=str(uuid.uuid4()), user_id=1, actor="admin", target="web7 (10.0.0.7:22)",
                                       source_ip="192.0.2.44", worker="h:1", bytes_in=12, bytes_out=3456))
        db.session.add(TerminalSession(id=str(uuid.uuid4()), user_id=1, actor="admin", target="old (10.0.0.8:22)",
                                       worker="h:1", ended_at=now_utc()))
        db.session.commit()
    html = body(admin.get("/terminals/connected"))
    assert "Connected now (1)" in html and "web7 (10.0.0.7:22)" in html and "12 / 3456" in html
    assert "old (10.0.0.8:22)" not in html


# --- in the browser ---------------------------------------------------------------------------------

def test_viewer_in_the_browser(browser, page, live_server, sshd):
    """Icon → login row; a terminal opened and closed elsewhere and another log-in show up by themselves."""
    browser_login(page, live_server)
    page.click("#audit-icon")
    dialog = page.locator("#audit-dialog")
    dialog.get_by_text("user logged in").first.wait_for()
    assert page.url == live_server.url + "/"  # a panel over the page, not a navigation

    other = browser.new_context()
    try:
        tab = other.new_page()
        browser_login(tab, live_server)
        http = live_server.login()
        name = "viewer-" + uuid.uuid4().hex[:6]
        live_server.add_device(http, sshd, name)
        tab.reload()
        tab.locator(f'button.open-terminal[data-device-name="{name}"]').first.click()
        tab.locator(".xterm-rows").get_by_text(re.compile(r"gatehouse-test@")).first.wait_for()
        tab.locator(".tab-close").click()
        tab.locator("#confirm-dialog[open] .confirm-yes").click()  # a running session asks before it ends
        # The close frame must leave before the window does: a window closed first only detaches the session.
        wait_for(lambda: any(name in (e.target or "") for e in live_events(live_server, "session.ended")))
    finally:
        other.close()
    # No reload: the poll (every 5 s) brings both session rows.
    dialog.get_by_text(f"stopped session with {name}").wait_for()
    dialog.get_by_text(f"started session with {name}").wait_for()

    page.select_option("#audit-filters select[name=action]", "auth.login")
    dialog.locator("tr[data-action]").first.wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('#audit-dialog tr[data-action]')]"
                           ".every(r => r.dataset.action === 'auth.login')")
    actions = dialog.locator("tr[data-action]").evaluate_all("rows => rows.map(r => r.dataset.action)")
    assert actions and set(actions) == {"auth.login"}
    shown = len(actions)
    live_server.login()  # another browser logs in; the filtered, open viewer shows it by itself
    page.wait_for_function(f"() => document.querySelectorAll('#audit-dialog tr[data-action]').length > {shown}")
    page.click("[data-close-dialog]")
    assert not dialog.is_visible()


def test_audit_page_is_bookmarkable(page, live_server):
    browser_login(page, live_server)
    page.goto(live_server.url + "/audit/?action=auth.login&size=25")
    assert page.locator("select[name=action]").input_value() == "auth.login"
    assert page.locator("select[name=size]").input_value() == "25"
    page.locator("tr[data-action='auth.login']").first.wait_for()
    assert ADMIN_PASSWORD not in page.content()


def test_polling_stops_when_closed_or_hidden(page, live_server):
    browser_login(page, live_server)
    polls = []
    page.on("request", lambda request: polls.append(time.monotonic()) if "/audit/rows" in request.url else None)
    page.click("#audit-icon")
    page.locator("#audit-results").wait_for()
    page.wait_for_timeout(2300)  # a little over AUDIT_POLL_SECONDS=2 on the test server
    assert len(polls) >= 1  # it polls while open and visible
    # Hidden tab: no polls; shown again: one at once.
    page.evaluate("""() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
                             document.dispatchEvent(new Event('visibilitychange')); }""")
    seen = len(polls)
    page.wait_for_timeout(2300)  # a little over AUDIT_POLL_SECONDS=2 on the test server
    assert len(polls) == seen
    page.evaluate("""() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
                             document.dispatchEvent(new Event('visibilitychange')); }""")
    page.wait_for_timeout(500)
    assert len(polls) == seen + 1
    page.click("[data-close-dialog]")
    seen = len(polls)
    page.wait_for_timeout(2300)  # a little over AUDIT_POLL_SECONDS=2 on the test server
    assert len(polls) == seen and page.locator("#audit-results").count() == 0
