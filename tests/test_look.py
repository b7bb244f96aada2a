"""Look and feel in a real headless Chromium: light and dark themes (system, switch, terminal palette, contrast),
times in the browser's time zone, the viewer's time presets and picker, clear filters, pager, kept selection,
and the log-in error beside the form. GATEHOUSE_SHOTS=folder also saves screenshots of the main pages."""
import os
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import pytest

from tests.support import browser_login, wait_for

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
ZONE = "Europe/Berlin"
LIGHT_BG, DARK_BG = "rgb(245, 246, 248)", "rgb(15, 20, 27)"


def _loopback_only(route):
    """Let the page reach the live server only; anything else is refused before it leaves the machine."""
    if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


@pytest.fixture
def open_page(browser):
    """Open pages in new contexts with a colour scheme, the test's time zone and a size; close them after."""
    contexts = []

    def open_page(scheme="light", viewport=DESKTOP):
        context = browser.new_context(color_scheme=scheme, timezone_id=ZONE, viewport=viewport)
        context.route("**/*", _loopback_only)
        contexts.append(context)
        page = context.new_page()
        return page

    yield open_page
    for context in contexts:
        context.close()


def background(page):
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def open_terminal(page, live_server, sshd):
    """Add a device for the page's admin and open a terminal to it; return the xterm's background colour."""
    http = live_server.login()
    name = "look-" + os.urandom(3).hex()
    live_server.add_device(http, sshd, name)
    page.reload()
    if page.locator("#sidebar-toggle[aria-expanded=false]").count():  # a phone: the device list is a drawer
        page.click("#sidebar-toggle")
    page.locator(f'button.open-terminal[data-device-name="{name}"]').first.click()
    page.locator(".xterm-rows").get_by_text(re.compile(r"gatehouse-test@")).first.wait_for()
    return name


def terminal_background(page):
    return page.evaluate("getComputedStyle(document.querySelector('.terminal-panel .xterm-scrollable-element')).backgroundColor")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_light_by_default_dark_by_prefers_color_scheme(open_page, live_server, viewport):
    light = open_page("light", viewport)
    light.goto(live_server.url + "/login")
    assert background(light) == LIGHT_BG
    dark = open_page("dark", viewport)
    dark.goto(live_server.url + "/login")
    assert background(dark) == DARK_BG
    assert dark.evaluate("document.documentElement.dataset.theme") is None  # the system decides: no override
    assert dark.locator("#theme-switch").input_value() == "auto"


def test_terminal_follows_the_theme_and_the_switch_is_remembered(open_page, live_server, sshd):
    page = open_page("dark")
    browser_login(page, live_server)
    assert background(page) == DARK_BG
    open_terminal(page, live_server, sshd)
    assert terminal_background(page) == "rgb(11, 15, 20)"

    page.select_option("#theme-switch", "light")  # the terminal changes with the page, no reload
    assert background(page) == LIGHT_BG
    wait_for(lambda: terminal_background(page) == "rgb(251, 251, 252)")
    page.reload()  # remembered, and applied before the first paint (no inline script: the CSP forbids one)
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert background(page) == LIGHT_BG and page.locator("#theme-switch").input_value() == "light"

    page.select_option("#theme-switch", "dark")
    assert background(page) == DARK_BG
    page.select_option("#theme-switch", "auto")
    assert page.evaluate("localStorage.getItem('gatehouse-theme')") is None and background(page) == DARK_BG

    system_light = open_page("light")
    browser_login(system_light, live_server)
    system_light.select_option("#theme-switch", "dark")
    assert background(system_light) == DARK_BG


def _luminance(rgb):
    channels = [c / 255 for c in rgb]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a, b):
    """WCAG 2 contrast ratio of two colours given as (r, g, b)."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


RESOLVE = """names => names.map(name => {
  const probe = document.createElement('span');
  probe.style.color = 'var(' + name + ')';
  document.body.append(probe);
  const value = getComputedStyle(probe).color;
  probe.remove();
  return value.match(/\\d+/g).slice(0, 3).map(Number);
})"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast_is_at_least_wcag_aa(open_page, live_server, scheme):
    page = open_page(scheme)
    page.goto(live_server.url + "/login")
    texts = ["--fg", "--muted", "--accent", "--danger", "--ok", "--warn"]
    grounds = ["--bg", "--card", "--surface", "--field"]
    colours = dict(zip(texts + grounds + ["--tint-ok", "--tint-bad", "--tint-info"],
                       page.evaluate(RESOLVE, texts + grounds + ["--tint-ok", "--tint-bad", "--tint-info"])))
    pairs = [(t, g) for t in texts for g in grounds]
    pairs += [("--ok", "--tint-ok"), ("--danger", "--tint-bad"), ("--fg", "--tint-info")]  # the badges, flashes
    low = {f"{t} on {g}": round(contrast(colours[t], colours[g]), 2) for t, g in pairs
           if contrast(colours[t], colours[g]) < 4.5}
    assert not low, low
    on_accent = page.evaluate(RESOLVE, ["--on-accent"])[0]
    assert contrast(on_accent, colours["--accent"]) >= 4.5 and contrast(on_accent, colours["--danger"]) >= 4.5
    topbar = page.evaluate(RESOLVE, ["--topbar", "--topbar-fg", "--topbar-muted"])
    assert contrast(topbar[1], topbar[0]) >= 4.5 and contrast(topbar[2], topbar[0]) >= 4.5


def test_times_in_the_browsers_zone_with_offset_and_utc_on_hover(open_page, live_server):
    page = open_page("light")
    browser_login(page, live_server)
    page.goto(live_server.url + "/audit/?action=auth.login")
    first = page.locator("#audit-results tr[data-action] time").first
    first.wait_for()
    utc = datetime.fromisoformat(first.get_attribute("datetime").replace("Z", "+00:00"))
    berlin = utc + timedelta(hours=1)  # Europe/Berlin in November: CET, +01:00
    assert utc.month in (11, 12, 1, 2), "the expected offset assumes winter time"
    assert first.inner_text() == berlin.strftime("%Y-%m-%d %H:%M:%S") + " +01:00"
    assert first.get_attribute("title") == utc.strftime("%Y-%m-%d %H:%M:%S") + " UTC"
    assert re.fullmatch(r"just now|\d+ min ago|\d+ h ago", first.locator("xpath=following-sibling::span[1]").inner_text())
    # The poll's new rows are rewritten too, and the status line says the local time of the last update.
    page.wait_for_function("() => document.querySelector('#audit-results .audit-status time').textContent.endsWith('+01:00')")
    assert "UTC" not in page.locator("#audit-results tbody").inner_text()


def test_presets_and_picker_keep_utc_iso_in_the_url(open_page, live_server):
    page = open_page("light")
    browser_login(page, live_server)
    page.goto(live_server.url + "/audit/?action=auth.login")
    before = datetime.now(timezone.utc)
    page.click("button[data-preset-seconds='3600']")
    page.wait_for_url(re.compile(r"since="))
    since = parse_qs(urlparse(page.url).query)["since"][0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", since)
    moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
    assert abs((before - timedelta(hours=1) - moment).total_seconds()) < 30
    assert parse_qs(urlparse(page.url).query)["action"] == ["auth.login"]  # the other filters stay
    page.locator("#audit-results tr[data-action='auth.login']").first.wait_for()  # our log-in is in the last hour

    page.click("button[data-preset-seconds='604800']")
    page.wait_for_url(lambda url: parse_qs(urlparse(url).query).get("since", [since])[0] != since)

    picker = page.locator("label:has(input[name=since]) input[type=datetime-local]")
    picker.fill("2026-11-20T10:15:00")  # Berlin time: 09:15 UTC
    assert page.locator("input[name=since]").input_value() == "2026-11-20T09:15:00Z"
    page.click("#audit-filters button[type=submit]")
    page.wait_for_url(re.compile(r"since=2026-11-20T09%3A15%3A00Z"))
    assert page.locator("label:has(input[name=since]) input[type=datetime-local]").input_value() == "2026-11-20T10:15"

    page.click("a.clear-filters")
    page.wait_for_url(live_server.url + "/audit/")
    assert page.locator("a.clear-filters").count() == 0 and page.locator("input[name=since]").input_value() == ""


def test_pager_previous_and_next(open_page, live_server):
    for _ in range(30):  # each log-in adds events, until there is a second page
        if "of 1</p>" not in live_server.login().get(live_server.url + "/audit/rows?size=25", timeout=10).text:
            break
    page = open_page("light")
    browser_login(page, live_server)
    page.goto(live_server.url + "/audit/?size=25")
    assert page.locator(".pager a[rel=prev]").count() == 0
    page.click(".pager a[rel=next]")
    page.get_by_text(re.compile(r"events, page 2 of")).wait_for()
    page.click(".pager a[rel=prev]")
    page.get_by_text(re.compile(r"events, page 1 of")).wait_for()
    assert "size=25" in page.locator("#audit-results").get_attribute("hx-get")


def test_selection_survives_the_refresh(open_page, live_server):
    page = open_page("light")
    browser_login(page, live_server)
    page.goto(live_server.url + "/audit/")
    page.locator("#audit-results tr[data-action] td").nth(1).wait_for()
    page.evaluate("""() => {
        const cell = document.querySelector('#audit-results tr[data-action] td:nth-child(2)');
        document.querySelector('#audit-results').dataset.marked = '1';
        getSelection().selectAllChildren(cell);
    }""")
    selected = page.evaluate("getSelection().toString()")
    assert selected
    page.wait_for_timeout(4500)  # two polls (AUDIT_POLL_SECONDS=2 on the test server)
    assert page.evaluate("getSelection().toString()") == selected
    assert page.locator("#audit-results[data-marked]").count() == 1  # not replaced
    page.evaluate("getSelection().removeAllRanges()")
    page.wait_for_function("() => !document.querySelector('#audit-results[data-marked]')")


def test_log_in_error_beside_the_form_and_focus_on_the_password(open_page, live_server):
    page = open_page("light")
    page.goto(live_server.url + "/login")
    assert page.evaluate("document.activeElement.id") == "username"
    page.fill("#username", "nobody-" + os.urandom(3).hex())
    page.fill("#password", "wrong-password")
    page.click("button[type=submit]")
    message = page.locator("section.card .form-messages[aria-live] .flash.error")
    message.wait_for()
    assert message.inner_text() == "Invalid username or password."
    assert page.locator(".flashes").count() == 0  # not above the page as well
    assert page.evaluate("document.activeElement.id") == "password"
    assert page.locator("#username").input_value().startswith("nobody-")


@pytest.mark.skipif(not os.environ.get("GATEHOUSE_SHOTS"), reason="set GATEHOUSE_SHOTS=folder to save screenshots")
def test_screenshots(open_page, live_server, sshd):
    folder = os.environ["GATEHOUSE_SHOTS"]
    os.makedirs(folder, exist_ok=True)
    for scheme in ("light", "dark"):
        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page = open_page(scheme, viewport)
            page.goto(live_server.url + "/login")
            page.fill("#username", "admin")
            page.fill("#password", "not-it")
            page.click("button[type=submit]")
            page.locator(".form-messages .flash").wait_for()
            page.screenshot(path=f"{folder}/login-{scheme}-{size}.png")
            browser_login(page, live_server)
            open_terminal(page, live_server, sshd)
            page.screenshot(path=f"{folder}/terminals-{scheme}-{size}.png")
            page.goto(live_server.url + "/audit/?size=25")
            page.locator("#audit-results tr[data-action]").first.wait_for()
            page.screenshot(path=f"{folder}/audit-{scheme}-{size}.png")
