"""Gatehouse on a phone (390x844) in a real headless Chromium against gunicorn and sshd: the header keeps the user's
name and the theme switch in its Account menu, the first screen is the device list, the teams page keeps its margin,
and the pages stay axe-core clean. GATEHOUSE_SHOTS=folder also saves screenshots."""
import os
import re

import pytest

from tests.support import browser_login, wait_for
from tests.test_accessibility import AXE, NAMELESS, violations

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
PROMPT = re.compile(r"gatehouse-test@\S+\$")
# Every element of the header that is drawn, with its right edge: none may pass the screen's.
HEADER_EDGES = """() => [...document.querySelectorAll('.topbar *')].filter(e => e.getClientRects().length
  && !e.closest('#account-menu:not(:popover-open)')).map(e => e.getBoundingClientRect().right)"""
# The text a person sees on the page (display: none and closed menus are not in innerText).
SEEN_TEXT = "() => document.body.innerText"


def shoot(page, name):
    """Save a screenshot when GATEHOUSE_SHOTS names a folder."""
    folder = os.environ.get("GATEHOUSE_SHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        page.screenshot(path=os.path.join(folder, f"{name}.png"))


def new_page(browser, server, viewport=PHONE, scheme="light", axe=False, **options):
    """A page of its own context at this size and colour scheme, logged in as the admin."""
    context = browser.new_context(viewport=viewport, color_scheme=scheme, **options)
    if axe:
        context.add_init_script(path=str(AXE))  # axe-core, as tests/test_accessibility.py runs it
    page = context.new_page()
    browser_login(page, server)
    return page


def fits(page):
    """Say whether nothing is wider than the screen: the document, and each drawn part of the header."""
    width = page.viewport_size["width"]
    return (page.evaluate("document.documentElement.scrollWidth") <= width
            and max(page.evaluate(HEADER_EDGES)) <= width)


def open_account_menu(page):
    """Open the header's Account menu; return it."""
    page.click("#account-button")
    menu = page.locator("#account-menu")
    menu.wait_for(state="visible")
    return menu


@pytest.fixture(scope="module")
def device(live_server, sshd):
    """A device of the admin's that reaches the test sshd; its name."""
    name = "phone-" + os.urandom(3).hex()
    live_server.add_device(live_server.login(), sshd, name)
    return name


def test_the_phone_header_keeps_the_name_and_the_theme_switch_in_a_menu(browser, live_server):
    page = new_page(browser, live_server)
    try:
        button = page.locator("#account-button")
        for kept in ("#idle-badge", "#users-icon", "#teams-icon", "#audit-icon", "#account-button"):
            assert page.locator(kept).is_visible(), kept  # the key icons and the time left stay in the bar
        assert button.locator(".account-name").is_visible() and button.locator(".account-name").inner_text() == "admin"
        assert page.get_by_role("button", name="Account: admin", expanded=False).is_visible()
        assert page.locator("#theme-switch").is_hidden() and page.locator(".who").is_hidden()
        assert fits(page)

        menu = open_account_menu(page)
        wait_for(lambda: button.get_attribute("aria-expanded") == "true")  # set by the popover's toggle event
        assert menu.locator(".who").inner_text() == "admin" and page.locator("#theme-switch").is_visible()
        for link in ("#logins-icon", "#password-icon", "#twofactor-icon", "#logout-icon"):
            assert page.locator(link).is_visible(), link
        box = menu.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] and fits(page)
        shoot(page, "phone-menu-light")

        page.select_option("#theme-switch", "dark")  # changed from the menu, at once
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        page.keyboard.press("Escape")  # Esc closes the menu; the focus goes back to its button
        menu.wait_for(state="hidden")
        assert page.evaluate("document.activeElement.id") == "account-button"
        wait_for(lambda: button.get_attribute("aria-expanded") == "false")

        page.reload()  # the choice sticks
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        page.focus("#account-button")  # the menu by keyboard: its button, Enter, and Tab goes on into it
        page.keyboard.press("Enter")
        menu.wait_for(state="visible")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "theme-switch"
        assert page.locator("#theme-switch").input_value() == "dark"
        shoot(page, "phone-menu-dark")

        page.click("#logout-icon")  # log out from the menu
        page.wait_for_url(re.compile(r"/login"))
        assert page.locator("#username").is_visible()
    finally:
        page.context.close()


def test_the_desktop_header_stays_a_row_of_icons(browser, live_server):
    page = new_page(browser, live_server, DESKTOP)
    try:
        assert page.locator("#account-button").is_hidden()
        row = ["#theme-switch", "#idle-badge", ".who", "#users-icon", "#teams-icon", "#audit-icon", "#logins-icon",
               "#password-icon", "#twofactor-icon", "#logout-icon"]
        lefts = [page.locator(part).bounding_box()["x"] for part in row]  # each in view, in the bar's old order
        assert lefts == sorted(lefts)
        assert page.locator(".who").inner_text() == "admin"
    finally:
        page.context.close()


def test_a_menu_open_on_a_phone_closes_when_the_window_grows(browser, live_server):
    page = new_page(browser, live_server)
    try:
        open_account_menu(page)
        page.set_viewport_size(DESKTOP)  # a phone turned or a window widened: the bar has room for all again
        page.wait_for_function("!document.querySelector('#account-menu').matches(':popover-open')")
        assert page.locator("#account-button").is_hidden() and page.locator("#logout-icon").is_visible()
        wait_for(lambda: page.locator("#account-button").get_attribute("aria-expanded") == "false")
    finally:
        page.context.close()


def test_the_first_screen_on_a_phone_is_the_device_list(browser, live_server, device):
    page = new_page(browser, live_server)
    try:
        opener = page.locator(f'button.open-terminal[data-device-name="{device}"]').first
        toggle = page.locator("#sidebar-toggle")
        assert opener.is_visible()  # no drawer to open first
        assert toggle.is_hidden() and toggle.get_attribute("aria-expanded") == "true"
        assert "Ctrl+Shift" not in page.evaluate(SEEN_TEXT) and fits(page)
        shoot(page, "phone-home")

        opener.click()  # a terminal opens over the whole width; the list becomes the drawer
        page.locator(".terminal-panel:not([hidden]) .xterm-rows").get_by_text(PROMPT).first.wait_for()
        page.locator("#sidebar").wait_for(state="hidden")
        assert toggle.is_visible() and toggle.get_attribute("aria-expanded") == "false"

        toggle.click()  # the Devices button brings the list back, as a drawer
        opener.wait_for(state="visible")
        assert toggle.get_attribute("aria-expanded") == "true"
        page.keyboard.press("Escape")
        page.locator("#sidebar").wait_for(state="hidden")

        page.focus("[role=tab]")
        page.keyboard.press("Delete")  # the last terminal closes: the list is the page again, the focus in it
        page.locator("#confirm-dialog[open] .confirm-yes").click()
        page.locator(".tab").wait_for(state="detached")
        opener.wait_for(state="visible")
        page.wait_for_function("document.activeElement.closest('#sidebar') !== null")
        assert toggle.is_hidden() and fits(page)
    finally:
        page.context.close()


def test_a_desktop_keeps_the_copy_hint_and_a_touch_screen_drops_it(browser, live_server):
    desktop = new_page(browser, live_server, DESKTOP)
    tablet = new_page(browser, live_server, {"width": 1024, "height": 768}, has_touch=True, is_mobile=True)
    try:
        hint = desktop.locator("#terminals .empty")
        assert "To copy, select text and press Ctrl+Shift+C; to paste, press Ctrl+Shift+V." in hint.inner_text()
        assert tablet.locator("#terminals .empty").is_visible()  # the list is beside it; no keys to press here
        assert "Ctrl+Shift" not in tablet.evaluate(SEEN_TEXT)
    finally:
        desktop.context.close()
        tablet.context.close()


def test_the_create_team_button_keeps_the_page_margin(browser, live_server):
    page = new_page(browser, live_server)
    try:
        page.goto(live_server.url + "/teams/")
        box = page.locator("#create-team").bounding_box()
        assert box["x"] >= 8 and box["x"] + box["width"] <= PHONE["width"] - 8
        assert fits(page)
    finally:
        page.context.close()


@pytest.mark.parametrize("path", ["/users/", "/audit/", "/account/sessions", "/account/password", "/account/2fa",
                                  "/teams/"])
def test_every_logged_in_page_has_the_same_phone_header(browser, live_server, path):
    page = new_page(browser, live_server)
    try:
        page.goto(live_server.url + path)
        assert page.locator("#account-button").is_visible() and page.locator("#idle-badge").is_visible()
        assert fits(page)
        open_account_menu(page)
        assert page.locator("#theme-switch").is_visible() and fits(page)
    finally:
        page.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_phone_home_page_and_its_menu_are_axe_clean(browser, live_server, device, scheme):
    page = new_page(browser, live_server, scheme=scheme, axe=True)
    try:
        page.locator(f'button.open-terminal[data-device-name="{device}"]').first.wait_for()
        assert violations(page) == [] and page.evaluate(NAMELESS) == []
        open_account_menu(page)
        assert violations(page) == [] and page.evaluate(NAMELESS) == []
    finally:
        page.context.close()
