"""Resume in a real Chromium: a network cut under `top`, a reload with three tabs, a session waiting in another
browser, a gateway restart. Real sshd, real gunicorn; the network is a forwarder on loopback that can be cut."""
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.audit.models import AuditEvent
from tests.netcut import NetCut
from tests.support import new_user
from tests.test_replay import read_live

PROMPT = re.compile(r"gatehouse-test@.*\$")


def login(page, base, name, password):
    """Log in through the real page at base (the server, or the forwarder in front of it)."""
    page.goto(base + "/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(base) + "/$"))


def trail(server, name):
    """Return the session.* actions of a user's sessions, oldest first."""
    rows = read_live(server, select(AuditEvent).where(AuditEvent.actor == name, AuditEvent.action.like("session.%"))
                     .order_by(AuditEvent.id))
    return [e.action for e in rows]


def screen(page, index=None):
    """Return the text of the shown terminal (or of tab index, shown first)."""
    if index is not None:
        page.locator(".tab").nth(index).locator("[role=tab]").click()
    return page.locator(".terminal-panel:not([hidden]) .xterm-rows").first


def shell_pid(page, index, word):
    """Type `echo word-$$` in a tab; return the shell's pid it prints."""
    rows = screen(page, index)
    page.keyboard.type(f"echo {word}-$$")
    page.keyboard.press("Enter")
    rows.get_by_text(re.compile(rf"^{word}-\d+")).first.wait_for()
    return re.search(rf"(?m)^{word}-(\d+)", rows.inner_text()).group(1)


@pytest.fixture
def user_with_device(live_server, sshd):
    """A new user (not the admin: other tests' sessions stay out of their tabs) with one device; (name, password)."""
    name, password = new_user(live_server)
    live_server.add_device(live_server.login(name, password), sshd, "blip-box")
    return name, password


def open_device(page):
    """Open a terminal on the user's device and wait for its prompt."""
    page.locator('button.open-terminal[data-device-name="blip-box"]').first.click()
    screen(page).get_by_text(PROMPT).first.wait_for()


@pytest.fixture
def unpluggable(page, live_server, user_with_device):
    """The user's terminal open in page through a forwarder whose network the test can cut; yields the forwarder."""
    net = NetCut(live_server.port)
    try:
        login(page, f"http://127.0.0.1:{net.port}", *user_with_device)
        open_device(page)
        yield net
    finally:
        net.close()


def test_top_survives_a_network_cut(page, live_server, user_with_device, unpluggable):
    net = unpluggable
    page.keyboard.type("top -d 1")
    page.keyboard.press("Enter")
    screen(page).get_by_text(re.compile(r"^top - ")).first.wait_for()
    net.cut(down=True)  # unplugged: the socket dies without a close frame, reconnecting fails meanwhile
    page.locator(".tab-status", has_text="reconnecting…").wait_for()
    page.locator(".link-notice", has_text="attempt 2").wait_for()
    assert "The session is kept" in page.locator(".link-notice").inner_text()
    net.plug()
    expect(page.locator(".tab-status")).to_have_text("")
    expect(page.locator(".link-notice")).to_be_hidden()
    screen(page).get_by_text(re.compile(r"^top - ")).first.wait_for()  # top still runs, on the same screen
    page.keyboard.press("q")
    expect(screen(page).get_by_text(re.compile(r"^top - "))).to_have_count(0)  # back at the shell
    page.keyboard.type("echo after-$((40+2))")
    page.keyboard.press("Enter")
    screen(page).get_by_text("after-42").wait_for()
    actions = trail(live_server, user_with_device[0])
    assert actions[0] == "session.started" and "session.detached" in actions and "session.resumed" in actions
    assert "session.ended" not in actions


def test_a_reload_brings_three_tabs_back_in_the_same_shells(page, live_server, user_with_device):
    name, password = user_with_device
    login(page, live_server.url, name, password)
    for _ in range(3):
        open_device(page)
    before = [shell_pid(page, i, "before") for i in range(3)]
    page.reload()
    assert len(page.leave_questions) == 1  # leaving with running terminals asked first
    expect(page.locator("[role=tab]")).to_have_count(3)
    for i in range(3):
        screen(page, i).get_by_text(f"before-{before[i]}").first.wait_for()  # each at its own screen
    assert [shell_pid(page, i, "after") for i in range(3)] == before  # each still the same shell
    actions = trail(live_server, name)
    assert actions.count("session.detached") == 3 and actions.count("session.resumed") == 3
    assert "session.ended" not in actions


def test_a_session_left_in_another_browser_is_offered_with_its_age(browser, live_server, user_with_device):
    name, password = user_with_device
    first = browser.new_context().new_page()
    login(first, live_server.url, name, password)
    open_device(first)
    pid = shell_pid(first, 0, "there")
    first.context.close()  # the browser goes away: the session waits
    second = browser.new_context().new_page()
    try:
        login(second, live_server.url, name, password)
        offer = second.locator(".resume-offer")
        expect(offer).to_contain_text("1 session of yours waits to be resumed (blip-box; detached")
        expect(second.locator("[role=tab]")).to_have_count(0)  # not taken without asking
        offer.get_by_role("button", name="Resume it").click()
        screen(second).get_by_text(f"there-{pid}").first.wait_for()
        assert shell_pid(second, 0, "here") == pid
    finally:
        second.context.close()


def test_a_gateway_restart_ends_the_session_and_offers_a_new_one_at_once(page, live_servers, sshd):
    server = live_servers()
    name, password = new_user(server)
    server.add_device(server.login(name, password), sshd, "blip-box")
    login(page, server.url, name, password)
    open_device(page)
    server.stop()
    notice = page.locator(".link-notice")
    expect(notice).to_contain_text("Gatehouse is restarting; this session has ended.")
    server.start()
    notice.get_by_role("button", name="Open a new session").click()
    expect(notice).to_be_hidden()
    screen(page).get_by_text(PROMPT).nth(1).wait_for()  # a second prompt: the new shell
    page.keyboard.type("echo new-$((1+1))")
    page.keyboard.press("Enter")
    screen(page).get_by_text("new-2").wait_for()


def test_keys_typed_while_reconnecting_are_sent_in_order_or_said_dropped(page, unpluggable):
    net = unpluggable
    net.cut(down=True)
    page.locator(".tab-status", has_text="reconnecting…").wait_for()
    page.keyboard.type("echo kept-$((3*3))")
    page.keyboard.press("Enter")
    net.plug()
    screen(page).get_by_text("kept-9").wait_for()  # typed while away, run once back
    net.cut(down=True)
    page.locator(".tab-status", has_text="reconnecting…").wait_for()
    page.keyboard.insert_text("x" * 5000)  # a paste too big to keep
    page.keyboard.type("echo lost-$((2*2))")
    net.plug()
    screen(page).get_by_text(re.compile(r"^\d+ bytes typed while disconnected were not sent")).wait_for()
    page.keyboard.type("echo fine-$((4*4))")
    page.keyboard.press("Enter")
    screen(page).get_by_text("fine-16").wait_for()
    assert "echo lost-" not in screen(page).inner_text() and "xxxxxxxx" not in screen(page).inner_text()



def test_keys_typed_while_the_session_opens_are_sent_once_it_stands(page, live_server, user_with_device):
    login(page, live_server.url, *user_with_device)
    page.locator('button.open-terminal[data-device-name="blip-box"]').first.click()
    page.keyboard.type("echo early-$((7*6))")  # before the prompt, even before `connected`
    page.keyboard.press("Enter")
    screen(page).get_by_text("early-42").wait_for()


def test_a_socket_gone_quiet_says_so_and_comes_back(page, unpluggable):
    net = unpluggable
    net.freeze()  # no error anywhere, just silence: only the page's ping finds it out
    page.locator(".tab-status", has_text="reconnecting…").wait_for()
    assert "Connection lost, reconnecting" in page.locator(".link-notice").inner_text()
    net.plug()
    expect(page.locator(".tab-status")).to_have_text("")
    page.keyboard.type("echo thawed-$((9*9))")
    page.keyboard.press("Enter")
    screen(page).get_by_text("thawed-81").wait_for()
