"""The terminal page on a phone and on a desktop, in a real headless Chromium against gunicorn and sshd: the device
drawer, full-width terminals, the extra keys (Esc, Tab, Ctrl, arrows, |, ~), text size, the collapsible sidebar and
full screen. GATEHOUSE_SHOTS=folder also saves screenshots."""
import os
import re
import time

import pytest
from playwright.sync_api import expect

from tests.support import WAIT_SECONDS, browser_login

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
SCREEN = ".terminal-panel:not([hidden]) .xterm-rows"


def lines(page):
    """Return the lines the shown terminal displays."""
    return [line.strip() for line in page.locator(SCREEN).inner_text().split("\n")]


def wait_line(page, pattern, count=1, timeout=WAIT_SECONDS):
    """Wait until `count` lines of the shown terminal match `pattern` (whole line); return the last match."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in (re.fullmatch(pattern, line) for line in lines(page)) if m]
        if len(found) >= count:
            return found[-1]
        assert time.monotonic() < deadline, f"no {count}× {pattern!r} in:\n" + "\n".join(lines(page))
        time.sleep(0.05)


def run(page, command):
    """Type a command into the shown terminal and press Enter."""
    page.keyboard.type(command)
    page.keyboard.press("Enter")


class Remote:
    """Ask the remote PTY its size with `stty size`, each time under a new tag."""

    def __init__(self, page):
        self.page, self.asked = page, 0

    def cols(self):
        self.page.wait_for_timeout(200)  # the refit runs on the next frame; its resize goes ahead of these keys
        self.asked += 1
        run(self.page, f"echo sz{self.asked}-$(stty size | tr ' ' x)")
        return int(wait_line(self.page, rf"sz{self.asked}-\d+x(\d+)").group(1))


def no_page_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth <= innerWidth")


def focus_in(page, selector):
    return page.evaluate("s => !!document.activeElement.closest(s)", selector)


def open_page(browser, live_server, sshd, viewport, **options):
    """A logged-in page of its own context with a fresh device; return the page and the device's name."""
    context = browser.new_context(viewport=viewport, **options)
    page = context.new_page()
    browser_login(page, live_server)
    name = "layout-" + os.urandom(3).hex()
    live_server.add_device(live_server.login(), sshd, name)
    page.reload()
    return page, name


def opener(page, name):
    return page.locator(f'button.open-terminal[data-device-name="{name}"]').first


def shoot(page, name):
    if os.environ.get("GATEHOUSE_SHOTS"):
        os.makedirs(os.environ["GATEHOUSE_SHOTS"], exist_ok=True)
        page.screenshot(path=os.path.join(os.environ["GATEHOUSE_SHOTS"], name + ".png"))


@pytest.fixture(scope="module")
def phone(browser, live_server, sshd):
    page, name = open_page(browser, live_server, sshd, PHONE, is_mobile=True, has_touch=True)
    yield page, name
    page.context.close()


@pytest.fixture(scope="module")
def desktop(browser, live_server, sshd):
    page, name = open_page(browser, live_server, sshd, DESKTOP)
    yield page, name
    page.context.close()


def test_phone_drawer_and_a_full_width_terminal(phone):
    page, name = phone
    toggle, sidebar = page.locator("#sidebar-toggle"), page.locator("#sidebar")
    assert no_page_scroll(page)
    assert sidebar.is_visible() and toggle.is_hidden()  # no terminal yet: the device list is the page
    opener(page, name).click()  # a terminal opens; the list becomes a drawer
    sidebar.wait_for(state="hidden")
    wait_line(page, r"gatehouse-test@\S+\$")
    assert toggle.get_attribute("aria-expanded") == "false"

    toggle.click()  # open: over the page, the focus inside
    sidebar.wait_for(state="visible")
    assert toggle.get_attribute("aria-expanded") == "true" and focus_in(page, "#sidebar")
    shoot(page, "layout-phone-drawer")
    page.keyboard.press("Escape")  # Esc closes, the focus goes back to the button
    sidebar.wait_for(state="hidden")
    assert toggle.get_attribute("aria-expanded") == "false" and focus_in(page, "#sidebar-toggle")

    toggle.click()
    sidebar.wait_for(state="visible")
    page.click(".sidebar-backdrop", position={"x": 370, "y": 600})  # a tap beside the drawer closes it
    sidebar.wait_for(state="hidden")
    assert focus_in(page, "#sidebar-toggle")

    toggle.click()
    sidebar.wait_for(state="visible")
    opener(page, name).click()  # opening a terminal closes the drawer and gives the terminal the focus
    sidebar.wait_for(state="hidden")
    wait_line(page, r"gatehouse-test@\S+\$")
    assert focus_in(page, ".xterm") and toggle.get_attribute("aria-expanded") == "false"
    assert Remote(page).cols() >= 40  # the whole width, at the phone's default text size
    assert no_page_scroll(page)
    shoot(page, "layout-phone-terminal")


def test_phone_extra_keys(phone):
    page, name = phone
    if not page.locator(".terminal-panel").count():  # run alone (or first on its worker): open the terminal here
        opener(page, name).click()  # no terminal yet: the device list is the page
        wait_line(page, r"gatehouse-test@\S+\$")
    keys = page.locator("#extra-keys")
    assert keys.is_visible()  # shown by default on a touch screen
    key = lambda label: keys.get_by_role("button", name=label, exact=True)

    run(page, "sleep 30")
    key("Ctrl for the next key").click()
    assert key("Ctrl for the next key").get_attribute("aria-pressed") == "true"
    assert focus_in(page, ".xterm")  # the key took no focus: a phone's keyboard stays up
    page.keyboard.type("c")  # Ctrl then c: ^C ends the sleep
    assert key("Ctrl for the next key").get_attribute("aria-pressed") == "false"
    run(page, "echo done-$((1+1))")
    wait_line(page, "done-2")

    page.keyboard.type("echo /usr/shar")
    key("Tab").click()  # completes the unique path
    run(page, " tab-done")
    wait_line(page, "/usr/share/ tab-done")

    run(page, "echo up-$((3*3))")
    wait_line(page, "up-9")
    key("Up arrow").click()  # recalls the previous command
    page.keyboard.press("Enter")
    wait_line(page, "up-9", count=2)

    page.keyboard.type("echo a")
    key("Tilde").click()
    page.keyboard.type("b ")
    key("Pipe").click()
    run(page, " tr a-z A-Z")
    wait_line(page, "A~B")

    page.keyboard.type("echo lef")  # a left arrow, then typed text lands before the last letter
    key("Left arrow").click()
    run(page, "t-")
    wait_line(page, "let-f")
    assert no_page_scroll(page)


def test_desktop_text_size_sidebar_and_full_screen(desktop):
    page, name = desktop
    assert page.locator("#sidebar").is_visible()
    opener(page, name).click()
    wait_line(page, r"gatehouse-test@\S+\$")
    remote = Remote(page)
    start = remote.cols()

    page.click("#font-larger")
    page.click("#font-larger")
    assert page.locator("#font-size").inner_text() == "16 px"
    larger = remote.cols()
    assert larger < start

    toggle = page.locator("#sidebar-toggle")
    toggle.click()  # collapse: the terminal takes the width
    assert toggle.get_attribute("aria-expanded") == "false" and not page.locator("#sidebar").is_visible()
    wide = remote.cols()
    assert wide > larger
    shoot(page, "layout-desktop-collapsed")

    page.reload()  # both remembered
    assert toggle.get_attribute("aria-expanded") == "false" and not page.locator("#sidebar").is_visible()
    assert page.locator("#font-size").inner_text() == "16 px"
    toggle.click()
    page.locator("#sidebar").wait_for(state="visible")
    assert toggle.get_attribute("aria-expanded") == "true" and page.evaluate("localStorage.getItem('gatehouse-sidebar')") is None

    expect(page.locator("[role=tab]")).to_have_count(1)  # the reload kept the terminal: its tab comes back
    expect(page.locator(".tab-status")).to_have_text("")
    remote.asked += 10  # the screen is redrawn with the answers from before the reload
    before = remote.cols()
    page.click("#fullscreen-toggle")
    page.wait_for_function("document.fullscreenElement && document.fullscreenElement.id === 'terminals'")
    page.locator("#fullscreen-toggle[aria-pressed=true][aria-label='Leave full screen']").wait_for()
    remote.cols()  # typing goes on in full screen
    shoot(page, "layout-desktop-fullscreen")
    page.click("#fullscreen-toggle")  # the same button leaves
    page.wait_for_function("document.fullscreenElement === null")
    page.locator("#fullscreen-toggle[aria-pressed=false]").wait_for()
    assert remote.cols() == before

    page.focus("#font-smaller")  # by keyboard: the focus stays on the control
    page.keyboard.press("Enter")
    page.keyboard.press("Space")
    assert page.locator("#font-size").inner_text() == "14 px" and focus_in(page, "#font-smaller")
    page.focus("[role=tab]")
    page.keyboard.press("Delete")  # the running session asks first; then the tab closes and the focus goes to Devices
    page.locator("#confirm-dialog[open] .confirm-yes").click()
    page.locator(".tab").wait_for(state="detached")
    assert focus_in(page, "#sidebar-toggle") and page.locator("[role=tablist]").get_attribute("aria-owns") == ""


def test_replay_player_follows_the_theme(desktop, live_server):
    page, _ = desktop  # its terminals of the test above ended with a reload and with the page
    page.goto(live_server.url + "/audit/?action=sessions")
    page.locator("a.session-link").first.click()
    player = page.locator(".replay-screen .ap-player")
    player.wait_for()
    background = "getComputedStyle(document.querySelector('.replay-screen .ap-player')).backgroundColor"
    assert "asciinema-player-theme-gatehouse-light" in player.get_attribute("class")
    assert page.evaluate(background) == "rgb(251, 251, 252)"  # light page, light player
    shoot(page, "layout-replay-light")
    page.select_option("#theme-switch", "dark")
    page.locator(".replay-screen .ap-player.asciinema-player-theme-gatehouse-dark").wait_for()
    assert page.evaluate(background) == "rgb(11, 15, 20)"
    shoot(page, "layout-replay-dark")
    page.select_option("#theme-switch", "auto")
