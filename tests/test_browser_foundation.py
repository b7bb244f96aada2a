"""The foundation in a real headless Chromium: log in, add a device (htmx, no reload), log out."""
import re

from tests.support import browser_login


def test_log_in_add_device_log_out(page, live_server, sshd):
    page.goto(live_server.url + "/")
    assert page.url.startswith(live_server.url + "/login")
    page.fill("#username", "admin")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    page.get_by_text("Invalid username or password.").wait_for()

    browser_login(page, live_server)
    page.evaluate("window.__sameDocument = true")  # survives only if no full reload happens
    page.click("text=Add device")
    page.fill("#name", "lab-switch")
    page.fill("#host", "127.0.0.1")
    page.fill("#port", str(sshd.port))
    page.fill("#username", sshd.user)
    page.select_option("#auth_type", "key")
    assert page.locator("#password").is_hidden() and page.locator("#private_key").is_visible()
    page.fill("#private_key", sshd.key_text)
    page.click("#device-form button[type=submit]")
    page.get_by_text("Device lab-switch added.").wait_for()
    assert page.locator('button.open-terminal[data-device-name="lab-switch"]').first.is_visible()
    assert page.evaluate("window.__sameDocument") is True
    assert "PRIVATE KEY" not in page.content()

    page.click("text=Add device")
    page.fill("#name", "")
    page.fill("#host", "bad host")
    page.click("#device-form button[type=submit]")
    drawer = page.locator("dialog#device-drawer[open]")  # the errors stay in the open drawer
    drawer.get_by_text("Give the device a name.").wait_for()
    drawer.get_by_text("Enter a host name or an IPv4/IPv6 address.").wait_for()
    page.keyboard.press("Escape")
    drawer.wait_for(state="detached")

    page.click("#logout-icon")
    page.wait_for_url(re.compile(re.escape(live_server.url) + "/login"))
    page.get_by_text("You are logged out.").wait_for()
    page.goto(live_server.url + "/")
    assert page.url.startswith(live_server.url + "/login")


def test_change_password_page(page, live_server):
    browser_login(page, live_server)
    page.click("#password-icon")
    page.fill("#current", "wrong-current-password")
    page.fill("#new", "x")
    page.fill("#confirm", "x")
    page.click("main button[type=submit]")
    page.get_by_text("The current password is wrong.").wait_for()
