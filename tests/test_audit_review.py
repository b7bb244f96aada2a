"""The review tab (PCI DSS 10.4): the period, its sections, marking it reviewed, refusals, the overdue alert."""
import html as htmlib
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app.audit import events, review
from app.audit.events import record
from app.audit.models import AuditEvent
from app.dbtypes import now_utc
from app.extensions import db
from tests.support import AuthActions, browser_login, csrf_from, logged_in_user, make_app
from tests.test_audit_summary import SHOTS, fail_login, shoot_fresh, wait_processed


def text(response):
    return response.get_data(as_text=True)


def shown(client, path="/audit/?tab=review"):
    """Return the review page, its hidden to_id and its CSRF token."""
    page = text(client.get(path))
    return page, int(re.search(r'name="to_id" value="(\d+)"', page).group(1)), csrf_from(page)


def mark(client, to_id, token, comment="", path="/audit/review?standalone=1"):
    return client.post(path, data={"to_id": str(to_id), "comment": comment, "csrf_token": token})


def reviews(app):
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.reviewed")
                                  .order_by(AuditEvent.id)).all()


def head(app):
    with app.app_context():
        return db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))


def test_marking_records_the_period_and_the_next_starts_after_it(any_app):
    client = any_app.test_client()
    AuthActions(client).login()
    with any_app.app_context():
        record("auth.login_failed", "failed log in as eve", outcome="failure", actor="eve", source_ip="10.0.0.9")
        record("auth.locked", "account eve locked", outcome="failure", actor="eve")
        record("user.role_changed", "changed role of eve to user", details={"username": "eve", "role": "user"})
        record("user.role_changed", "changed role of ann to admin", details={"username": "ann", "role": "admin"})
    page, to_id, token = shown(client)
    assert to_id == head(any_app) - 1 and "(ids 1 to" in page  # its own audit.viewed comes after
    record_after = None
    with any_app.app_context():  # written after the page was shown: not claimed reviewed
        record_after = record("device.created", "created device late", actor="admin")["id"]
    response = mark(client, to_id, token, "looked at eve's failures")
    assert response.status_code == 302 and response.headers["Location"] == "/audit/?tab=review"
    first = reviews(any_app)[0]
    assert first.actor == "admin" and first.details["from_id"] == 1 and first.details["to_id"] == to_id
    assert first.details["comment"] == "looked at eve's failures"
    assert first.details["counts"]["failed_logins"] == 1 and first.details["counts"]["critical"] == 1
    assert first.details["counts"]["new_admins"] == 2  # ann and the first admin, on SQLite and PostgreSQL
    assert first.details["from"].endswith("Z") and first.details["to"] > first.details["from"]
    assert first.message == f"reviewed audit events 1 to {to_id} ({to_id} events)"

    page, second_to, token = shown(client)
    assert f"Marked events 1 to {to_id} reviewed." in page
    assert f"(ids {to_id + 1} to {second_to})" in page and record_after > to_id
    assert "looked at eve&#39;s failures" in page  # the history
    assert mark(client, second_to, token).status_code == 302
    second = reviews(any_app)[1]
    assert second.details["from_id"] == to_id + 1 and second.details["to_id"] == second_to
    assert second.details["comment"] == ""


@pytest.mark.parametrize("to_id,message", [
    (lambda head: head + 5, "does not exist"),
    (lambda head: "abc", "names no period"),
    (lambda head: "", "names no period"),
    (lambda head: "-1", "names no period"),
])
def test_forged_to_id_refused(app, admin, to_id, message):
    _, _, token = shown(admin)
    before = head(app)
    response = mark(admin, to_id(before), token)
    assert response.status_code == 422 and message in text(response)
    assert reviews(app) == []


def test_stale_to_id_refused(app, admin):
    _, to_id, token = shown(admin)
    assert mark(admin, to_id, token).status_code == 302
    again = mark(admin, to_id, token)  # the same page submitted twice, or a second admin's older page
    assert again.status_code == 422
    assert f"Events up to {to_id} are already reviewed" in text(again)
    assert mark(admin, to_id - 1, token).status_code == 422
    assert len(reviews(app)) == 1


def test_nothing_marked_when_the_trail_cannot_be_written(app, admin, monkeypatch):
    _, to_id, token = shown(admin)

    def broken(*args, **kwargs):
        raise events.AuditWriteError("disk full")

    monkeypatch.setattr(review, "record", broken)
    response = mark(admin, to_id, token, "kept")
    assert response.status_code == 503 and "the review was not recorded" in text(response)
    assert ">kept</textarea>" in text(response) and reviews(app) == []


def test_csrf_and_users(app, admin):
    _, to_id, _ = shown(admin)
    assert admin.post("/audit/review", data={"to_id": str(to_id)}).status_code == 400
    user = logged_in_user(app, "bob")
    token = csrf_from(text(user.get("/")))
    assert user.post("/audit/review", data={"to_id": str(to_id), "csrf_token": token}).status_code == 404
    assert reviews(app) == []


def test_comment_is_escaped_and_bounded(app, admin):
    _, to_id, token = shown(admin)
    too_long = mark(admin, to_id, token, "x" * 2001)
    assert too_long.status_code == 422 and "longer than 2000" in text(too_long)
    assert 'x' * 2001 in text(too_long)  # kept in the box to shorten, escaped like any text
    hostile = '<script>alert("r")</script>\nsecond line'
    assert mark(admin, to_id, token, hostile).status_code == 302
    page = text(admin.get("/audit/?tab=review"))
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;r&#34;)&lt;/script&gt;\nsecond line" in page
    assert reviews(app)[0].details["comment"] == hostile


def test_panel_review_swaps_the_panel(app, admin):
    panel = text(admin.get("/audit/panel?tab=review"))
    assert 'hx-post="/audit/review"' in panel and 'hx-target="#audit-dialog-body"' in panel
    to_id = int(re.search(r'name="to_id" value="(\d+)"', panel).group(1))
    response = admin.post("/audit/review", data={"to_id": to_id, "csrf_token": csrf_from(panel)},
                          headers={"HX-Request": "true"})
    assert response.status_code == 302 and response.headers["Location"] == "/audit/panel?tab=review"
    after = text(admin.get("/audit/panel?tab=review"))
    assert "<html" not in after and f"Marked events 1 to {to_id} reviewed." in after


def at(moment, monkeypatch):
    """Make record() stamp events with moment."""
    monkeypatch.setattr(events, "now_utc", lambda: moment)


def test_sections_with_a_local_time_zone(tmp_path, monkeypatch):
    app = make_app(tmp_path, AUDIT_TIMEZONE="Europe/Berlin", AUDIT_USUAL_HOURS=(7, 19))
    wednesday = datetime(2026, 11, 25, tzinfo=timezone.utc)  # Berlin is UTC+1 in November
    sessions = {
        "early-utc": wednesday.replace(hour=6, minute=30),  # 07:30 in Berlin: usual
        "late-berlin": wednesday.replace(hour=18, minute=30),  # 19:30 in Berlin: outside, though 18:30 UTC
        "night": wednesday.replace(hour=1),  # 02:00 in Berlin
        "saturday": wednesday.replace(day=28, hour=11),  # noon on a Saturday
        "midday": wednesday.replace(hour=11),
    }
    with app.app_context():
        for name, moment in sessions.items():
            at(moment, monkeypatch)
            record("session.started", f"started session with {name}", actor=name, target=f"{name} (10.0.0.1:22)")
        monkeypatch.undo()
        record("user.role_changed", "changed role of carol to admin", details={"username": "carol", "role": "admin"})
        record("user.role_changed", "changed role of dave to user", details={"username": "dave", "role": "user"})
        record("user.created", "created user erin", details={"username": "erin", "admin": True})
        record("user.created", "created user frank", details={"username": "frank", "admin": False})
        record("hostkey.trusted", "trusted host key of a", target="a (10.0.0.2:22)")
        record("hostkey.mismatch", "host key of a changed", outcome="failure", target="a (10.0.0.2:22)")
        record("hostkey.forgotten", "forgot host key of a", target="10.0.0.2:22")
        for i in range(3):
            record("auth.login_failed", "failed log in as mallory", outcome="failure", actor="mallory",
                   source_ip=f"10.0.1.{i}")
    client = app.test_client()
    AuthActions(client).login()
    page = text(client.get("/audit/?tab=review"))
    late = re.findall(r'<span class="who">(\w[\w-]*)</span></div>\s*<div class="what">\1 \(10\.0\.0\.1:22\)', page)
    assert late == ["saturday", "night", "late-berlin"]  # newest id first
    assert "Sat 2026-11-28 12:00" in page and "Wed 2026-11-25 19:30" in page  # local times
    assert "07:00 to 19:00" in page and "Europe/Berlin" in page
    assert re.search(r'data-count="late">3<', page)
    assert re.search(r'data-count="admins">3<', page)  # carol, erin and the first admin
    admins = page[page.index('id="rev-admins"'):page.index('id="rev-hostkeys"')]
    assert "changed role of carol to admin" in admins and "created user erin" in admins
    assert "dave" not in admins and "frank" not in admins
    assert re.search(r'data-count="hostkeys">3<', page)
    assert re.search(r'data-count="failed"><a [^>]*>3</a>', page)
    assert re.search(r'data-count="critical"><a [^>]*>1</a>', page)  # the mismatch
    warning = htmlib.unescape(re.search(r'data-count="warning"><a class="trail" href="([^"]+)"[^>]*>(\d+)</a>',
                                        page).group(1))
    assert "severity=warning" in warning and "since=" in warning and "until=" in warning
    assert client.get(warning).status_code == 200


def test_outside_hours_rule():
    config = {"AUDIT_USUAL_HOURS": (7, 19)}
    berlin = review.ZoneInfo("Europe/Berlin")
    assert not review.outside_hours(datetime(2026, 11, 25, 7, 0, tzinfo=berlin), config)
    assert not review.outside_hours(datetime(2026, 11, 25, 18, 59, tzinfo=berlin), config)
    assert review.outside_hours(datetime(2026, 11, 25, 19, 0, tzinfo=berlin), config)
    assert review.outside_hours(datetime(2026, 11, 25, 6, 59, tzinfo=berlin), config)
    assert review.outside_hours(datetime(2026, 11, 29, 12, 0, tzinfo=berlin), config)  # Sunday


def overdue_events(app):
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.review_overdue")
                                  .order_by(AuditEvent.id)).all()


def test_overdue_raised_once_a_day_and_not_after_a_review(tmp_path, monkeypatch):
    app = make_app(tmp_path, AUDIT_REVIEW_DAYS=2)
    start = now_utc()
    clock = [start - timedelta(days=3)]
    monkeypatch.setattr(events, "now_utc", lambda: clock[0])
    with app.app_context():
        for i in range(5):
            record("device.created", f"created device d{i}", actor="admin")
        oldest_unreviewed = review.period().start  # the first admin's creation, at the real start

    def check(moment):
        clock[0] = moment
        with app.app_context():
            found = review.check_overdue(now=moment)
            db.session.remove()
            return found

    assert check(start + timedelta(days=1)) is None  # one day old: not yet
    raised = check(start + timedelta(days=2, minutes=1))
    assert raised and raised["action"] == "audit.review_overdue" and raised["severity"] == "warning"
    assert raised["details"]["days"] == 2 and raised["details"]["unreviewed"] == 6
    assert raised["details"]["since"] == oldest_unreviewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert check(start + timedelta(days=2, minutes=11)) is None  # the next look, ten minutes later
    assert check(start + timedelta(days=2, hours=23)) is None
    assert check(start + timedelta(days=3, minutes=2))  # a day later, still unreviewed: once more
    assert len(overdue_events(app)) == 2

    clock[0] = start + timedelta(days=3, minutes=5)
    monkeypatch.setattr(review, "now_utc", lambda: clock[0])
    client = app.test_client()
    AuthActions(client).login()
    page, to_id, token = shown(client)
    assert "Overdue:" in page and "review-period overdue" in page
    assert mark(client, to_id, token, "caught up").status_code == 302
    assert check(start + timedelta(days=3, minutes=12)) is None
    assert check(start + timedelta(days=4)) is None
    assert len(overdue_events(app)) == 2
    assert check(start + timedelta(days=5, minutes=10))  # the new period, left two days: overdue again


# --- in the browser ---------------------------------------------------------------------------------

def test_review_in_the_browser(page, live_server):
    """Panel → Review; a comment and Mark reviewed record the period shown; the page and the panel at two sizes."""
    fail_login(live_server, "<b>mallory</b>")
    browser_login(page, live_server)
    shoot_fresh(page, live_server.url + "/audit/?tab=review", "audit-review", ".review-form",
                sizes=((1280, 800), (390, 844), (390, 2400)))
    page.click("#audit-icon")
    dialog = page.locator("#audit-dialog")
    dialog.locator("#audit-results").wait_for()
    wait_processed(page, "#audit-dialog [data-tab=summary]")
    dialog.locator("[data-tab=summary]").click()
    dialog.locator("#audit-summary").wait_for()
    wait_processed(page, "#audit-dialog [data-tab=review]")
    dialog.locator("[data-tab=review]").click()
    form = dialog.locator(".review-form")
    form.wait_for()
    wait_processed(page, "#audit-dialog .review-form")
    assert dialog.get_by_text("<b>mallory</b>").count() >= 1  # shown as text, not markup
    to_id = int(form.locator("input[name=to_id]").input_value())
    comment = f"checked <i>{uuid.uuid4().hex[:6]}</i>"
    form.locator("textarea").fill(comment)
    form.get_by_role("button", name="Mark reviewed").click()
    dialog.get_by_text(re.compile(rf"Marked events \d+ to {to_id} reviewed\.")).wait_for()
    assert page.url == live_server.url + "/"
    history = dialog.locator(".review-history")
    history.get_by_text(comment).wait_for()
    assert history.locator("i").count() == 0
    new_to = int(dialog.locator(".review-form input[name=to_id]").input_value())
    assert new_to > to_id  # the next period starts after the one just marked
    shoot_fresh(page, live_server.url + "/audit/?tab=review", "audit-review-after", ".review-history")
    if SHOTS:
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(200)
        page.screenshot(path=f"{SHOTS}/audit-review-panel-390x844.png")
