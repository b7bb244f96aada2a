"""Guard rails around terminals in a real headless Chromium against the real sshd: closing a running tab and
logging out with terminals open ask first (Cancel keeps everything), two tabs to one device have distinct names."""
import re
import uuid

from tests.support import browser_login, live_events, wait_for

PROMPT = re.compile(r"gatehouse-test@.*\$")


def new_device(page, server, sshd, prefix):
    """Add a device with a fresh name and show it in the page's device list; return its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    server.add_device(server.login(), sshd, name)
    page.reload()
    return name


def open_tab(page, name):
    """Open a terminal to the device from the list and wait for its shell; return its panel."""
    page.locator(f'button.open-terminal[data-device-name="{name}"]').first.click()
    panel = page.locator(".terminal-panel:not([hidden])")
    panel.locator(".xterm-rows").get_by_text(PROMPT).first.wait_for()
    return panel


def type_and_see(page, panel, text):
    """Run echo in the shown terminal and wait for its answer on the screen."""
    page.keyboard.type(f"echo {text}-$((40+2))")
    page.keyboard.press("Enter")
    panel.locator(".xterm-rows").get_by_text(f"{text}-42").wait_for()


def ended(server, name):
    """Return the session.ended events of the sessions to a device."""
    return [e for e in live_events(server, "session.ended") if e.target.startswith(name)]


def asked(page, question):
    """Wait for the one confirmation dialog, check its question and that Cancel has the focus; return it."""
    dialog = page.locator("#confirm-dialog[open]")
    dialog.wait_for()
    assert dialog.locator(".confirm-question").inner_text() == question
    assert page.evaluate("document.activeElement.classList.contains('confirm-no')")
    return dialog


def test_closing_a_running_tab_asks_and_an_ended_one_closes_at_once(page, live_server, sshd):
    browser_login(page, live_server)
    name = new_device(page, live_server, sshd, "guard")
    panel = open_tab(page, name)
    question = f"Close the session to {name}? The shell ends."

    page.locator(".tab button.tab-close").click()
    dialog = asked(page, question)
    assert dialog.locator(".confirm-yes").inner_text() == "Close session"
    dialog.locator(".confirm-no").click()  # Cancel keeps the tab and its shell
    dialog.wait_for(state="hidden")
    assert page.locator("[role=tab]").count() == 1 and not ended(live_server, name)
    page.locator("[role=tab]").click()
    type_and_see(page, panel, "still-here")

    page.focus("[role=tab]")
    page.keyboard.press("Delete")  # the keyboard's close asks the same; Esc answers no
    asked(page, question)
    page.keyboard.press("Escape")
    page.locator("#confirm-dialog").wait_for(state="hidden")
    assert page.locator("[role=tab]").count() == 1 and not ended(live_server, name)

    page.locator(".tab button.tab-close").click()
    asked(page, question).locator(".confirm-yes").click()
    page.locator(".tab").wait_for(state="detached")
    events = wait_for(lambda: ended(live_server, name))
    assert [e.details["reason"] for e in events] == ["client_closed"]

    panel = open_tab(page, name)  # a shell that exited: its tab closes without a question
    page.keyboard.type("exit")
    page.keyboard.press("Enter")
    page.locator(".tab-status", has_text="closed").wait_for()
    page.locator(".tab button.tab-close").click()
    page.locator(".tab").wait_for(state="detached")
    assert not page.locator("#confirm-dialog").is_visible()
    wait_for(lambda: len(ended(live_server, name)) == 2)


def test_two_tabs_to_one_device_have_distinct_names(page, live_server, sshd):
    browser_login(page, live_server)
    name = new_device(page, live_server, sshd, "twin")
    for _ in range(3):
        open_tab(page, name)
    titles = [name, f"{name} (2)", f"{name} (3)"]
    assert page.locator(".tab-name").all_inner_texts() == titles
    for title in titles:  # the accessible names differ too: the tabs and their close buttons
        page.get_by_role("tab", name=title, exact=True).wait_for()
        page.get_by_role("button", name=f"Close terminal {title}", exact=True).wait_for()

    page.get_by_role("button", name=f"Close terminal {name} (2)").click()
    asked(page, f"Close the session to {name} (2)? The shell ends.").locator(".confirm-yes").click()
    open_tab(page, name)  # a number is not given again while tabs to the device are open
    assert page.locator(".tab-name").all_inner_texts() == [name, f"{name} (3)", f"{name} (4)"]


def test_logging_out_with_terminals_open_says_how_many(page, live_server, sshd):
    browser_login(page, live_server)
    name = new_device(page, live_server, sshd, "leave")
    open_tab(page, name)
    panel = open_tab(page, name)

    page.click("#logout-icon")
    dialog = asked(page, "Log out? 2 terminals will be closed.")
    assert dialog.locator(".confirm-yes").inner_text() == "Log out"
    dialog.locator(".confirm-no").click()  # Cancel: still logged in, both shells on
    dialog.wait_for(state="hidden")
    assert page.url == live_server.url + "/" and page.locator("[role=tab]").count() == 2
    page.locator("[role=tab]").nth(1).click()
    type_and_see(page, panel, "not-yet")
    assert not ended(live_server, name)

    page.click("#logout-icon")
    asked(page, "Log out? 2 terminals will be closed.").locator(".confirm-yes").click()
    page.wait_for_url(re.compile(re.escape(live_server.url) + "/login"))
    page.get_by_text("You are logged out.").wait_for()
    wait_for(lambda: len(ended(live_server, name)) == 2)
