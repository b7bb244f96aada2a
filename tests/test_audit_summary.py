"""The security summary tab: its numbers on seeded events, the links behind them, who may see it, its polling."""
import html as htmlib
import os
import re
import uuid
from datetime import timedelta
from pathlib import Path

import requests
from sqlalchemy import insert, select

from app.audit import events
from app.audit.events import record
from app.audit.models import ALERT_TARGET, AuditEvent, AuditOutbox
from app.dbtypes import now_utc
from app.extensions import db
from tests.support import AuthActions, browser_login, csrf_from, logged_in_user, make_app


def seed_failures(app, monkeypatch):
    """Failed log-ins from 12 addresses (10.0.0.k fails k+1 times) by 12 names, one old one, and other events."""
    with app.app_context():
        monkeypatch.setattr(events, "now_utc", lambda: now_utc() - timedelta(hours=25))
        record("auth.login_failed", "failed log in as old", outcome="failure", actor="old", source_ip="10.9.9.9")
        monkeypatch.undo()
        for k in range(12):
            for n in range(k + 1):
                record("auth.login_failed", f"failed log in as user{n}", outcome="failure", actor=f"user{n}",
                       source_ip=f"10.0.0.{k}")
        record("auth.locked", "account user0 locked", outcome="failure", actor="user0")
        for label in ("web1 (10.0.0.5:22)", "web1 (10.0.0.5:22)", "db (10.0.0.6:22)"):
            record("hostkey.mismatch", "host key changed: refused connection", outcome="failure", actor="admin",
                   target=label)
        for name, count in (("admin", 3), ("bob", 1)):
            for _ in range(count):
                record("session.started", "started session with web1", actor=name, target="web1 (10.0.0.5:22)")


def admin_client(app):
    client = app.test_client()
    AuthActions(client).login()
    return client


def text(response):
    return response.get_data(as_text=True)


def rows_of(html, heading):
    """Return [(value, count)] of the tally table whose first column is heading."""
    table = html[html.index(f"<th>{heading}</th>"):]
    table = table[:table.index("</table>")]
    return [(htmlib.unescape(value), int(count)) for value, count in
            re.findall(r"<tr><td>([^<]*)</td>\s*<td class=\"num\"><a [^>]*>(\d+)</a>", table)]


def big(html, name):
    return int(re.search(rf'data-count="{name}"><a [^>]*>(\d+)</a>', html).group(1))


def test_numbers_on_seeded_events(any_app, monkeypatch):
    seed_failures(any_app, monkeypatch)
    html = text(admin_client(any_app).get("/audit/summary"))
    assert big(html, "failed") == sum(range(1, 13))  # the one from 25 h ago is outside the window
    by_ip = rows_of(html, "Source IP")
    assert by_ip == [(f"10.0.0.{k}", k + 1) for k in range(11, 1, -1)]  # top 10: the two smallest are cut
    by_user = rows_of(html, "Username")
    assert by_user[:3] == [("user0", 12), ("user1", 11), ("user2", 10)] and len(by_user) == 10
    assert "old" not in dict(by_user) and "10.9.9.9" not in html
    assert big(html, "locked") == 1 and rows_of(html, "Account") == [("user0", 1)]
    assert big(html, "mismatches") == 3
    assert rows_of(html, "Device") == [("web1 (10.0.0.5:22)", 2), ("db (10.0.0.6:22)", 1)]
    assert big(html, "sessions") == 4 and rows_of(html, "User") == [("admin", 3), ("bob", 1)]


def test_every_number_opens_the_trail_with_its_filters(app, monkeypatch):
    seed_failures(app, monkeypatch)
    client = admin_client(app)
    html = text(client.get("/audit/summary"))
    links = re.findall(r'<a class="trail" href="([^"]+)" hx-get="([^"]+)"[^>]*>(\d+)</a>', html)
    assert len(links) > 25
    for href, panel, number in links:
        href, panel = htmlib.unescape(href), htmlib.unescape(panel)
        assert href.startswith("/audit/?") and "tab=" not in href  # the Events tab
        assert panel == href.replace("/audit/?", "/audit/panel?")  # in the panel the link swaps the panel
        shown = text(client.get(href.replace("/audit/?", "/audit/rows?")))
        assert re.search(rf"\b{number} events?\b", shown), (href, number)
    assert any("ip=10.0.0.11" in href and "action=auth.login_failed" in href and "since=" in href
               for href, _, _ in links)


def test_page_links_are_plain_and_the_panel_opens_on_events(app, monkeypatch):
    seed_failures(app, monkeypatch)
    client = admin_client(app)
    page = text(client.get("/audit/?tab=summary"))
    assert 'hx-get="/audit/panel?' not in page  # on the page a number is a plain link
    assert 'hx-get="/audit/summary?standalone=1"' in page
    found = re.search(r'<td>user0</td>\s*<td class="num"><a class="trail" href="([^"]*auth.locked[^"]*)"', page)
    href = htmlib.unescape(found.group(1))
    opened = text(client.get(href))
    assert 'data-tab="events" href' in opened and re.search(r'data-tab="events"[^>]*aria-current="page"', opened)
    assert 'name="user" value="user0"' in opened and "1 event," in opened


def test_tabs_keep_the_choice_in_the_url(app):
    client = admin_client(app)
    page = text(client.get("/audit/?tab=summary&user=bob"))
    assert re.search(r'data-tab="summary" href="[^"]*tab=summary[^"]*"[^>]*aria-current="page"', page)
    assert 'id="audit-summary"' in page and 'id="audit-results"' not in page
    events_tab = htmlib.unescape(re.search(r'data-tab="events" href="([^"]+)"', page).group(1))
    assert events_tab == "/audit/?user=bob"  # the filters travel with the tabs
    panel = text(client.get("/audit/panel?tab=review"))
    assert 'hx-get="/audit/panel?tab=summary"' in panel and 'open as page' in panel
    assert client.get("/audit/?tab=nonsense").status_code == 404


def test_polled_like_the_table_and_opened_once(app):
    client = admin_client(app)
    html = text(client.get("/audit/panel?tab=summary"))
    polled = re.search(r'<div id="audit-summary"[^>]*>', html).group(0)
    assert "data-poll" in polled and 'hx-get="/audit/summary"' in polled
    assert 'hx-trigger="every 5s, refresh"' in polled and 'hx-swap="outerHTML"' in polled
    for _ in range(3):
        client.get("/audit/summary")
    with app.app_context():
        viewed = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.viewed")).all()
    assert [event.details for event in viewed] == [{"filters": {}, "tab": "summary"}]  # polls are not openings


def test_not_for_users(app):
    user = logged_in_user(app, "bob")
    for path in ("/audit/?tab=summary", "/audit/panel?tab=summary", "/audit/summary", "/audit/?tab=review",
                 "/audit/panel?tab=review"):
        assert user.get(path).status_code == 404, path
    assert user.post("/audit/review", data={"to_id": "1"}).status_code in (400, 404)  # no CSRF token: 400
    own = text(user.get("/audit/"))
    assert "audit-tabs" not in own and "Summary" not in own and 'id="audit-results"' in own


def test_chain_state_and_queues(tmp_path):
    secret_url = "http://127.0.0.1:9/hook?token=s3cr3t-token"
    app = make_app(tmp_path, SYSLOG_TARGETS=("tcp://127.0.0.1:9",), ALERT_WEBHOOK_URL=secret_url,
                   ALERT_WEBHOOK_SECRET="x" * 32)
    with app.app_context():
        record("audit.verified", "audit trail broken at event 3", outcome="failure", actor="console")
        record("audit.checkpoint", "signed the audit trail's head at event 4", actor="system",
               details={"head_id": 4})
        event_id = record("auth.locked", "account x locked", outcome="failure", actor="x")["id"]
        db.session.execute(insert(AuditOutbox).values(target=ALERT_TARGET, event_id=event_id + 1000,
                                                      queued_at=now_utc() - timedelta(seconds=30),
                                                      last_error=f"HTTP 500 from {secret_url}"))
        db.session.commit()
    html = text(admin_client(app).get("/audit/summary"))
    assert re.search(r'class="bad"><a class="trail"[^>]*action=audit.verified[^>]*>failed</a>', html)
    assert ">head 4</a>" in html
    assert re.search(r"<dt>Syslog queue</dt>\s*<dd>\d+ events, oldest \d+ s", html)
    assert re.search(r"<dt>Alert queue</dt>\s*<dd>\d+ events, oldest 3\d s", html)
    assert "last error: HTTP 500 from (webhook)" in html and "s3cr3t" not in html


def test_hostile_values_are_escaped(app):
    hostile = '<script>alert(1)</script>'
    with app.app_context():
        record("auth.login_failed", "failed log in", outcome="failure", actor=hostile, source_ip="10.0.0.1")
        record("hostkey.mismatch", "changed", outcome="failure", target='"><img src=x onerror=alert(1)>')
    html = text(admin_client(app).get("/audit/summary"))
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- in the browser ---------------------------------------------------------------------------------

SHOTS = os.environ.get("GATEHOUSE_SHOTS")  # look at the pages: GATEHOUSE_SHOTS=/tmp/gatehouse-shots pytest ...


def shoot_fresh(page, url, name, ready, sizes=((1280, 800), (390, 844))):
    """Open url in a new tab at each size and save a screenshot when GATEHOUSE_SHOTS names a folder."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for width, height in sizes:
        fresh = page.context.new_page()
        fresh.set_viewport_size({"width": width, "height": height})
        fresh.goto(url)
        fresh.locator(ready).first.wait_for()
        fresh.screenshot(path=f"{SHOTS}/{name}-{width}x{height}.png", full_page=True)
        fresh.close()


def fail_login(server, name):
    """Fail a log-in through the real form."""
    http = requests.Session()
    token = csrf_from(http.get(server.url + "/login", timeout=10).text)
    http.post(server.url + "/login", data={"username": name, "password": "wrong-password-123", "csrf_token": token},
              timeout=10)


def wait_processed(page, selector):
    """Wait until htmx has taken over the element (a click before that is a plain navigation)."""
    page.wait_for_function(f"() => !!(document.querySelector({selector!r}) || {{}})['htmx-internal-data']")


def test_summary_in_the_browser(page, live_server):
    """Panel → Summary by keyboard; a failed log-in elsewhere shows up by itself; a number opens the Events tab."""
    browser_login(page, live_server)
    page.click("#audit-icon")
    dialog = page.locator("#audit-dialog")
    dialog.locator("#audit-results").wait_for()
    wait_processed(page, "#audit-dialog [data-tab=summary]")
    dialog.locator("[data-tab=summary]").focus()
    page.keyboard.press("Enter")
    dialog.locator("#audit-summary").wait_for()
    assert page.url == live_server.url + "/"  # still a panel over the page
    assert page.evaluate("document.activeElement.dataset.tab") == "summary"  # the keyboard stays on the tabs
    assert dialog.locator("[data-tab=summary]").get_attribute("aria-current") == "page"
    failed = dialog.locator('[data-count="failed"] a')
    before = int(failed.inner_text())
    name = "nobody-" + uuid.uuid4().hex[:6]
    fail_login(live_server, name)
    # No reload: the poll (every 2 s on the test server) brings the new count and the name.
    page.wait_for_function(f"() => +document.querySelector('[data-count=failed] a').textContent === {before + 1}")
    dialog.get_by_text(name).wait_for()
    wait_processed(page, "#audit-summary a.trail")
    polls = []
    page.on("request", lambda request: polls.append(1) if "/audit/summary" in request.url else None)
    page.evaluate("""() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
                             document.dispatchEvent(new Event('visibilitychange')); }""")
    page.wait_for_timeout(2300)  # a little over AUDIT_POLL_SECONDS=2 on the test server
    assert polls == []  # no polls from a hidden tab
    page.evaluate("""() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
                             document.dispatchEvent(new Event('visibilitychange')); }""")
    page.wait_for_timeout(500)
    assert polls == [1]  # shown again: one at once
    dialog.locator("tr", has_text=name).locator("a.trail").click()
    dialog.locator("#audit-results").wait_for()
    assert dialog.locator("[data-tab=events]").get_attribute("aria-current") == "page"
    assert page.locator("#audit-filters input[name=user]").input_value() == name
    actions = dialog.locator("tr[data-action]").evaluate_all("rows => rows.map(r => r.dataset.action)")
    assert actions == ["auth.login_failed"]
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/audit-events-panel-1280x800.png")
    shoot_fresh(page, live_server.url + "/audit/?tab=summary", "audit-summary", "#audit-summary")
    if SHOTS:  # the panel too, on a phone
        page.set_viewport_size({"width": 390, "height": 844})
        wait_processed(page, "#audit-dialog [data-tab=summary]")
        dialog.locator("[data-tab=summary]").click()
        dialog.locator("#audit-summary").wait_for()
        page.screenshot(path=f"{SHOTS}/audit-summary-panel-390x844.png")


def test_blocked_addresses_and_slowed_names_are_counted(app):
    with app.app_context():
        record("auth.address_blocked", "address 10.1.1.1 blocked for 15 minutes after 20 failed log-ins",
               outcome="failure", actor="system", source_ip="10.1.1.1", details={"address": "10.1.1.1"})
        for _ in range(2):
            record("auth.throttled", "log-ins as carol slowed after 5 failures in a row", outcome="failure",
                   actor="carol", source_ip="10.2.2.2")
    html = text(admin_client(app).get("/audit/summary"))
    assert big(html, "blocked") == 1 and big(html, "slowed") == 2
    assert re.search(r'href="/audit/\?[^"]*action=auth.address_blocked[^"]*ip=10.1.1.1[^"]*"[^>]*>1</a>', html)
    assert re.search(r'href="/audit/\?[^"]*action=auth.throttled[^"]*user=carol[^"]*"[^>]*>2</a>', html)
