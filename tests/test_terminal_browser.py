"""Terminals in a real headless Chromium: open, type, read the screen, two tabs, close."""
import re
import time

from playwright.sync_api import expect
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from tests.support import WAIT_SECONDS, browser_login, server_app


def session_events(server):
    app = server_app(server)
    with app.app_context():
        found = db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("session.%"))
                                   .order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        db.engine.dispose()
    return found


def test_terminal_in_two_tabs(page, live_server, sshd):
    browser_login(page, live_server)
    page.click("text=Add device")
    page.fill("#name", "browser-box")
    page.fill("#host", "127.0.0.1")
    page.fill("#port", str(sshd.port))
    page.fill("#username", sshd.user)
    page.fill("#password", sshd.password)
    page.click("#device-form button[type=submit]")
    opener = page.locator('button.open-terminal[data-device-name="browser-box"]').first
    opener.click()
    first = page.locator(".terminal-panel").nth(0)
    first.locator(".xterm-rows").get_by_text(re.compile(r"gatehouse-test@.*\$")).first.wait_for()
    assert sshd.fingerprint() in first.locator(".xterm-rows").inner_text()  # the host key, shown to the user
    page.keyboard.type("echo hello-$((6*7))")
    page.keyboard.press("Enter")
    first.locator(".xterm-rows").get_by_text("hello-42").wait_for()

    opener.click()  # a second tab to the same device, at the same time
    second = page.locator(".terminal-panel").nth(1)
    second.locator(".xterm-rows").get_by_text(re.compile(r"gatehouse-test@.*\$")).first.wait_for()
    page.keyboard.type("echo second-$((2+3))")
    page.keyboard.press("Enter")
    second.locator(".xterm-rows").get_by_text("second-5").wait_for()
    tabs = page.locator('[role="tab"]')
    assert tabs.count() == 2 and "browser-box" in tabs.nth(0).inner_text()

    page.locator(".tab").nth(0).locator("button.tab-close").click()
    page.locator("#confirm-dialog[open] .confirm-yes").click()  # a running session asks before it ends
    expect(page.locator('[role="tab"]')).to_have_count(1, timeout=WAIT_SECONDS * 1000)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        ended = [e for e in session_events(live_server) if e.action == "session.ended"
                 and e.target.startswith("browser-box")]
        if ended:
            break
        time.sleep(0.1)
    assert [e.details["reason"] for e in ended] == ["client_closed"]

    page.locator('[role="tab"] >> nth=0').click()
    page.keyboard.type("exit")
    page.keyboard.press("Enter")
    page.locator(".tab-status", has_text="closed").wait_for()
    assert page.locator("button.reconnect").is_visible()
