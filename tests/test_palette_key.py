"""Ctrl+K opens the quick-connect palette wherever the focus is on the main page, the sidebar's search and device
list included (it used to do nothing there, leaving the focus in the sidebar search), in a real Chromium."""
import uuid

import pytest

from tests.support import browser_login


@pytest.fixture
def main_page(page, live_server, sshd):
    http = live_server.login()
    for _ in range(2):
        live_server.add_device(http, sshd, "pal-" + uuid.uuid4().hex[:6])
    browser_login(page, live_server)
    page.locator("#device-search").wait_for()  # the sidebar is visible at this width
    return page


def opens_the_palette(page):
    """Press Ctrl+K; say whether the palette opened with the focus in its input (then close it)."""
    palette = page.locator("dialog#palette")
    page.keyboard.press("Control+k")
    try:
        palette.wait_for()
    except Exception:
        focus = page.evaluate("document.activeElement.id || document.activeElement.className")
        return f"no palette; the focus is on {focus}"
    focus = page.evaluate("document.activeElement.id")
    page.keyboard.press("Escape")
    palette.wait_for(state="hidden")
    return focus == "palette-input" or f"the focus is on {focus}"


@pytest.mark.parametrize("where", ["the sidebar search", "the sidebar search with a query", "a device in the list",
                                   "the page"])
def test_ctrl_k_opens_the_palette(main_page, where):
    page = main_page
    if where.startswith("the sidebar search"):
        page.click("#device-search")
        if where.endswith("query"):
            page.keyboard.type("pal")
    elif where == "a device in the list":
        page.locator("#device-list .open-terminal").first.focus()
    assert opens_the_palette(page) is True
