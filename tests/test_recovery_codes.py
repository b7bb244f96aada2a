"""Recovery codes a person can keep (copy, download, print), and a recovery-code log-in that says how many are left;
setting the factor up gives the browser a new log-in token. Real Chromium against gunicorn."""
import os
import re
from pathlib import Path

import pyotp
from sqlalchemy import select, update
from werkzeug.security import check_password_hash

from app.auth.models import RecoveryCode, User
from app.dbtypes import now_utc
from app.extensions import db
from tests.support import browser_login, new_user, server_app

SHOTS = os.environ.get("GATEHOUSE_SHOTS")


def shot(page, name):
    """Save a screenshot into GATEHOUSE_SHOTS when it is set."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def spend_codes(server, username, count, keep):
    """Mark count of the user's unused recovery codes used (never the code keep), in the live server's database."""
    app = server_app(server)
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == username))
        rows = db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user_id,
                                                             RecoveryCode.used_at.is_(None))).all()
        ids = [row.id for row in rows if not check_password_hash(row.code_hash, keep)][:count]
        assert len(ids) == count
        db.session.execute(update(RecoveryCode).where(RecoveryCode.id.in_(ids)).values(used_at=now_utc()))
        db.session.commit()
        db.engine.dispose()


def enrol_in_browser(page, server):
    """Set up TOTP from the settings page; return the codes page's codes."""
    page.goto(server.url + "/account/2fa")
    page.get_by_role("button", name="Set up").click()
    secret = page.inner_text("#totp-secret").replace(" ", "")
    page.fill("#code", pyotp.TOTP(secret).now())
    page.locator("main button[type=submit]").click()
    page.locator("#recovery-codes").wait_for()
    return page.locator("#codes-list li code").all_inner_texts()


def log_in_with_recovery_code(page, server, name, password, code):
    page.goto(server.url + "/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/login/code")
    page.fill("#code", code)
    page.click("main button[type=submit]")
    page.wait_for_url(server.url + "/")


def test_recovery_codes_copy_download_print_and_what_is_left(browser, live_server):
    name, password = new_user(live_server)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.add_init_script("window.print = function () { window.printed = (window.printed || 0) + 1; };")
    try:
        browser_login(page, live_server, name, password)
        before = context.cookies()
        codes = enrol_in_browser(page, live_server)
        assert len(codes) == 10
        shot(page, "recovery-codes-desktop")
        # Copy: every code, under the line naming account and server.
        page.click("#codes-copy")
        page.locator(".copy-status", has_text="Copied").wait_for()
        copied = page.evaluate("() => navigator.clipboard.readText()").splitlines()
        assert copied[0] == f"Recovery codes of the Gatehouse account {name} at {live_server.url}"
        assert [line for line in copied if re.fullmatch(r"[2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4}", line)] == codes
        # Download: a .txt named for the account, with the same line and codes.
        with page.expect_download() as download:
            page.click("#codes-download")
        assert download.value.suggested_filename == f"gatehouse-recovery-codes-{name}.txt"
        text = Path(download.value.path()).read_text()
        assert text.splitlines()[0] == copied[0] and all(code in text for code in codes)
        # Print: the button prints; on paper only the account line and the codes.
        page.click("#codes-print")
        assert page.evaluate("() => window.printed") == 1
        page.emulate_media(media="print")
        assert page.locator(".account-line").is_visible() and page.locator("#codes-list").is_visible()
        assert not page.locator(".topbar").is_visible() and not page.locator("#codes-copy").is_visible()
        page.emulate_media(media="screen")
        assert not page.locator(".account-line").is_visible()
        page.click("#codes-done")
        page.wait_for_url(live_server.url + "/account/2fa")
        # Setting up the factor gave this browser a new token: the cookie from before opens nothing.
        old = browser.new_context()
        old.add_cookies(before)
        stale = old.new_page()
        stale.goto(live_server.url + "/")
        assert "/login" in stale.url
        old.close()
    finally:
        context.close()

    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        log_in_with_recovery_code(page, live_server, name, password, codes[0])
        told = page.locator(".flash", has_text="A recovery code was used; 9 left.")
        told.wait_for()
        assert "info" in told.get_attribute("class") and told.locator("a").count() == 0
        page.click("#account-button")  # on a phone, log out is in the header's Account menu
        page.click("#logout-icon")
        spend_codes(live_server, name, 5, keep=codes[9])  # 4 left: the next log-in leaves 3
        log_in_with_recovery_code(page, live_server, name, password, codes[9].upper().replace("-", ""))
        warned = page.locator(".flash.error", has_text="A recovery code was used; 3 left.")
        warned.wait_for()
        assert warned.get_attribute("role") == "alert"
        shot(page, "recovery-code-used-phone")
        warned.get_by_role("link", name="Make new recovery codes").click()
        page.wait_for_url(live_server.url + "/account/2fa#new-codes")
        assert "3 recovery codes left" in page.inner_text("#twofactor-settings")
    finally:
        context.close()
