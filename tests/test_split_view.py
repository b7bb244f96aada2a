"""Split view on the terminal page (static/js/panes.js) in a real Chromium against gunicorn and the test sshd: two
panes typing to two devices, Ctrl+Alt+arrows between them, a tab dragged onto a side, one pane on a phone, and
"type in all panes" with its session.broadcast events; the broadcast endpoint refuses what is not the user's own.
GATEHOUSE_SHOTS=folder also saves screenshots."""
import json
import os
import re
import uuid

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.audit.events import AuditWriteError
from app.audit.models import AuditEvent
from app.auth.accounts import create_user
from app.extensions import db
from app.terminals.models import SessionCommand, TerminalSession
from tests.test_accessibility import AXE, violations
from tests.support import AuthActions, browser_login, csrf_from, live_events, new_user, server_app, wait_for

PROMPT = re.compile(r"gatehouse-test@.*\$")
SHOWN = ".terminal-panel:not([hidden])"


def shoot(page, name):
    """Save a screenshot into GATEHOUSE_SHOTS when it is set."""
    if os.environ.get("GATEHOUSE_SHOTS"):
        os.makedirs(os.environ["GATEHOUSE_SHOTS"], exist_ok=True)
        page.screenshot(path=os.path.join(os.environ["GATEHOUSE_SHOTS"], name + ".png"))


def open_two(page, server, sshd):
    """Log in as a new user (the page brings back a user's open sessions: the admin's belong to other tests), add
    two devices, open a terminal to each; return the two tabs' panels (first opened first)."""
    user, password = new_user(server)
    browser_login(page, server, user, password)
    http = server.login(user, password)
    names = ["pane-a-" + os.urandom(2).hex(), "pane-b-" + os.urandom(2).hex()]
    for name in names:
        server.add_device(http, sshd, name)
    page.reload()
    panels = []
    for name in names:
        page.locator(f'button.open-terminal[data-device-name="{name}"]').first.click()
        panel = page.locator(f'.terminal-panel[aria-labelledby="{tab_id(page, name)}"]')
        panel.locator(".xterm-rows").get_by_text(PROMPT).first.wait_for()
        expect(panel).to_have_attribute("data-session", re.compile(".+"))
        panels.append(panel)
    return panels


def tab_id(page, name):
    """Return the id of the tab named name."""
    return page.locator(".tab-label", has_text=name).get_attribute("id")


def choose_layout(page, layout):
    """Pick a layout from the split-view menu."""
    page.click("#panes-layout")
    page.click(f'#panes-menu [data-layout="{layout}"]')


def run(page, command):
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def screen(panel):
    return panel.locator(".xterm-rows").inner_text()


def columns(page, panel, tag):
    """Ask the panel's remote PTY its width (stty size), under a tag; return the columns."""
    run(page, f"echo {tag}-$(stty size | tr ' ' x)")
    found = panel.locator(".xterm-rows").get_by_text(re.compile(rf"^{tag}-\d+x\d+")).first
    found.wait_for()
    return int(re.search(rf"{tag}-\d+x(\d+)", found.inner_text()).group(1))


def commands(server, session):
    """Return the command lines recorded for a session."""
    with server_app(server).app_context():
        found = db.session.scalars(select(SessionCommand.text).filter_by(session_id=session)).all()
        db.engine.dispose()
    return found


def broadcasts(server, session):
    """Return the details of the session.broadcast events that name a session, oldest first."""
    return [e.details for e in live_events(server, "session.broadcast") if session in e.details["sessions"]]


def test_two_panes_type_apart_and_together(page, live_server, sshd):
    page.context.add_init_script(path=str(AXE))
    first, second = open_two(page, live_server, sshd)
    a, b = first.get_attribute("data-session"), second.get_attribute("data-session")
    whole = columns(page, second, "w1")
    choose_layout(page, "columns")
    expect(page.locator(SHOWN)).to_have_count(2)
    expect(page.locator(".pane-head")).to_have_count(2)
    expect(second).to_have_class(re.compile("pane-focused"))  # the tab shown before the split keeps the focus
    assert columns(page, second, "w2") < whole * 0.6  # the remote PTY follows its pane's width
    run(page, "echo left-$((1+1))")
    second.locator(".xterm-rows").get_by_text("left-2").wait_for()
    assert "left-2" not in screen(first)

    page.keyboard.press("Control+Alt+ArrowRight")  # the first tab sits right of the focused one
    expect(first).to_have_class(re.compile("pane-focused"))
    assert page.evaluate("document.activeElement.closest('.terminal-panel').dataset.session") == a
    run(page, "echo right-$((2+2))")
    first.locator(".xterm-rows").get_by_text("right-4").wait_for()
    assert "right-4" not in screen(second)
    # The shortcut never reached the shell: the command line is exactly what was typed.
    assert wait_for(lambda: "echo right-$((2+2))" in commands(live_server, a))
    shoot(page, "split-columns-desktop")

    page.click("#panes-broadcast")
    expect(page.locator("#panes-broadcast")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".pane-head.is-broadcast")).to_have_count(2)
    on = wait_for(lambda: broadcasts(live_server, a))[0]
    assert set(on["sessions"]) == {a, b} and on["sessions"][0] == a and on["on"] is True and on["cause"] == "toggle"
    run(page, "echo all-$((3*3))")
    for panel in (first, second):
        panel.locator(".xterm-rows").get_by_text("all-9").wait_for()
    for session in (a, b):  # each session recorded the line as its own command
        assert wait_for(lambda s=session: "echo all-$((3*3))" in commands(live_server, s))
    shoot(page, "split-broadcast-desktop")
    assert violations(page) == []  # the heads, their badges and the amber button, light theme

    page.click("#panes-broadcast")
    expect(page.locator("#panes-broadcast")).to_have_attribute("aria-pressed", "false")
    off = wait_for(lambda: broadcasts(live_server, a)[1:])[0]
    assert set(off["sessions"]) == {a, b} and off["on"] is False and off["cause"] == "toggle"
    run(page, "echo alone-$((4*4))")
    first.locator(".xterm-rows").get_by_text("alone-16").wait_for()
    assert "alone-16" not in screen(second)

    page.click("#panes-broadcast")  # on again, then back to one pane: it switches itself off, audited
    expect(page.locator("#panes-broadcast")).to_have_attribute("aria-pressed", "true")
    choose_layout(page, "one")
    expect(page.locator(SHOWN)).to_have_count(1)
    expect(page.locator(".panes-note")).to_contain_text("fewer than two terminals")
    last = wait_for(lambda: [d for d in broadcasts(live_server, a)[2:] if d["on"] is False])[0]
    assert last["cause"] == "panes" and set(last["sessions"]) == {a, b}
    expect(page.locator("[role=tab]")).to_have_count(2)  # leaving split view keeps every tab


def test_drag_a_tab_to_split_and_phone_width(browser, live_server, sshd):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark")
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    first, second = open_two(page, live_server, sshd)
    expect(page.locator(SHOWN)).to_have_count(1)
    box = page.locator(".panels").bounding_box()
    first_chip = page.locator(".tab", has=page.locator(f'#{first.get_attribute("aria-labelledby")}'))
    first_chip.drag_to(page.locator(".panels"), target_position={"x": box["width"] - 20, "y": box["height"] / 2})
    expect(page.locator(SHOWN)).to_have_count(2)
    expect(page.locator(".panels")).to_have_class(re.compile("panes-columns"))
    assert first.get_attribute("data-pane") == "1" and second.get_attribute("data-pane") == "0"  # dropped right
    expect(first).to_have_class(re.compile("pane-focused"))
    shoot(page, "split-dragged-dark")

    # The trail refuses: the mode stays off and the page says why.
    page.route("**/terminals/broadcast", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body=json.dumps({"error": "Typing in all panes stays off: the audit trail could not record it."})))
    page.click("#panes-broadcast")
    expect(page.locator(".panes-note")).to_contain_text("the audit trail could not record it")
    expect(page.locator("#panes-broadcast")).to_have_attribute("aria-pressed", "false")
    expect(page.locator(".pane-head.is-broadcast")).to_have_count(0)
    page.unroute("**/terminals/broadcast")
    page.click(".panes-note-close")
    expect(page.locator(".panes-note")).to_have_count(0)

    page.click("#panes-layout")
    expect(page.locator('#panes-menu [data-layout="columns"]')).to_have_attribute("aria-pressed", "true")
    shoot(page, "split-menu-dark")
    page.click('#panes-menu [data-layout="grid"]')
    expect(page.locator(".pane-empty")).to_have_count(2)  # four panes, two tabs: two wait for one
    shoot(page, "split-grid-dark")
    assert violations(page) == []  # empty panes and the focused head, dark theme
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: one pane, no split controls
    expect(page.locator(SHOWN)).to_have_count(1)
    expect(page.locator(".pane-head")).to_have_count(0)
    expect(page.locator("#panes-layout")).to_be_hidden()
    expect(page.locator("#panes-broadcast")).to_be_hidden()
    expect(first).to_be_visible()  # the focused pane's tab
    page.emulate_media(color_scheme="light")
    expect(page.locator("#sidebar")).to_be_hidden()  # the device list slid away as a drawer
    shoot(page, "split-phone-light")
    page.set_viewport_size({"width": 1280, "height": 800})
    expect(page.locator(SHOWN)).to_have_count(2)  # the chosen layout comes back
    context.close()


def test_closing_a_tab_in_a_pane_fills_it_or_shrinks_the_view(page, live_server, sshd):
    first, second = open_two(page, live_server, sshd)
    name = page.locator(".tab-label").nth(0).inner_text().split("\n")[0]
    page.locator(f'button.open-terminal[data-device-name="{name}"]').first.click()  # a third tab, to the first device
    third = page.locator(f'.terminal-panel[aria-labelledby="{tab_id(page, name + " (2)")}"]')
    third.locator(".xterm-rows").get_by_text(PROMPT).first.wait_for()
    choose_layout(page, "rows")
    expect(page.locator(SHOWN)).to_have_count(2)
    assert third.get_attribute("data-pane") == "0" and first.get_attribute("data-pane") == "1"  # then the bar's order
    shoot(page, "split-rows-desktop")
    chip = {panel: page.locator(".tab", has=page.locator(f'#{panel.get_attribute("aria-labelledby")}'))
            for panel in (first, second, third)}
    chip[second].locator(".tab-label").click()  # a tab no pane shows goes into the focused pane
    expect(second).to_have_attribute("data-pane", "0")
    expect(third).to_be_hidden()
    chip[first].locator(".tab-label").click()  # a tab a pane shows: that pane takes the focus
    expect(first).to_have_class(re.compile("pane-focused"))
    assert second.get_attribute("data-pane") == "0"
    page.keyboard.press("Control+Alt+ArrowUp")
    expect(second).to_have_class(re.compile("pane-focused"))
    chip[third].locator(".tab-label").click()
    expect(third).to_have_attribute("data-pane", "0")

    chip[third].locator(".tab-close").click()
    page.locator("#confirm-dialog[open] .confirm-yes").click()
    expect(page.locator("[role=tab]")).to_have_count(2)
    expect(second).to_have_attribute("data-pane", "0")  # the tab no pane showed takes the closed one's place
    expect(page.locator(SHOWN)).to_have_count(2)

    chip[second].locator(".tab-close").click()
    page.locator("#confirm-dialog[open] .confirm-yes").click()
    expect(page.locator("[role=tab]")).to_have_count(1)
    expect(page.locator(SHOWN)).to_have_count(1)  # one tab left: one pane, no heads
    expect(page.locator(".pane-head")).to_have_count(0)
    expect(page.locator(".panels")).not_to_have_class(re.compile("panes-split"))
    run(page, "echo still-$((5*5))")
    first.locator(".xterm-rows").get_by_text("still-25").wait_for()


def test_the_chosen_layout_is_remembered_and_new_terminals_fill_it(page, live_server, sshd):
    user, password = new_user(live_server)
    browser_login(page, live_server, user, password)
    choose_layout(page, "rows")  # before any terminal is open
    expect(page.locator("#panes-layout")).to_have_attribute("data-layout", "rows")
    name = "pane-r-" + os.urandom(2).hex()
    live_server.add_device(live_server.login(user, password), sshd, name)
    page.reload()
    expect(page.locator('#panes-menu [data-layout="rows"]')).to_have_attribute("aria-pressed", "true")
    opener = page.locator(f'button.open-terminal[data-device-name="{name}"]').first
    opener.click()
    expect(page.locator(".pane-empty")).to_have_count(1)  # the second pane waits for a terminal
    opener.click()
    expect(page.locator(".pane-empty")).to_have_count(0)
    expect(page.locator(SHOWN)).to_have_count(2)
    expect(page.locator(".panels")).to_have_class(re.compile("panes-rows"))
    for panel in (page.locator(SHOWN).nth(0), page.locator(SHOWN).nth(1)):
        panel.locator(".xterm-rows").get_by_text(PROMPT).first.wait_for()


# ---- The endpoint, in process ----

def _session(user_id, ended=False):
    """Add a terminal session row of a user; return its id."""
    row = TerminalSession(id=str(uuid.uuid4()), user_id=user_id, actor="x", target=f"box-{os.urandom(2).hex()}",
                          source_ip="127.0.0.1", worker="test:1")
    if ended:
        from app.dbtypes import now_utc
        row.ended_at, row.end_reason = now_utc(), "client_closed"
    db.session.add(row)
    db.session.commit()
    return row.id


@pytest.fixture
def people(app):
    """Two users with open sessions (and alice an ended one); return clients and session ids."""
    with app.app_context():
        alice, bob = (create_user(name, "user-password-long", via="console") for name in ("alice", "bob"))
        ids = {"a1": _session(alice.id), "a2": _session(alice.id), "a_ended": _session(alice.id, ended=True),
               "b1": _session(bob.id)}
    clients = {}
    for name in ("alice", "bob"):
        client = app.test_client()
        assert AuthActions(client).login(name, "user-password-long").status_code == 302
        clients[name] = client
    return clients, ids


def post(client, body):
    token = csrf_from(client.get("/").get_data(as_text=True))
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post("/terminals/broadcast", data=data, content_type="application/json",
                       headers={"X-CSRFToken": token})


def recorded(app):
    with app.app_context():
        return db.session.scalars(select(AuditEvent).filter_by(action="session.broadcast")).all()


def test_broadcast_is_recorded_for_own_open_sessions(app, people):
    clients, ids = people
    response = post(clients["alice"], {"sessions": [ids["a2"], ids["a1"]], "on": True})
    assert response.status_code == 200 and response.get_json() == {"sessions": [ids["a2"], ids["a1"]], "on": True}
    [event] = recorded(app)
    assert event.actor == "alice" and event.session_id == ids["a2"]
    assert event.details == {"sessions": [ids["a2"], ids["a1"]], "on": True, "cause": "toggle"}
    assert event.message.startswith("started typing in 2 sessions at once: box-")
    # Off names the sessions it was on for, even one that has ended since.
    response = post(clients["alice"], {"sessions": [ids["a1"], ids["a_ended"]], "on": False, "cause": "panes"})
    assert response.status_code == 200
    assert recorded(app)[-1].details == {"sessions": [ids["a1"], ids["a_ended"]], "on": False, "cause": "panes"}


@pytest.mark.parametrize("who, pick, on", [
    ("bob", ["a1", "b1"], True),  # another user's session
    ("alice", ["a1", "a_ended"], True),  # an ended one cannot be typed in
    ("bob", ["b1", "a1"], False),  # nor switched off for another user
])
def test_broadcast_refuses_sessions_not_open_and_own(app, people, who, pick, on):
    clients, ids = people
    response = post(clients[who], {"sessions": [ids[p] for p in pick], "on": on})
    assert response.status_code == 404
    assert "of yours; nothing was changed" in response.get_json()["error"]
    assert recorded(app) == []


@pytest.mark.parametrize("body, words", [
    ("not json", "Send a JSON object"),
    ([1, 2], "Send a JSON object"),
    ({"sessions": ["x", "y"], "on": "yes"}, '"on" must be true or false'),
    ({"sessions": "x", "on": True}, '"sessions" must be a list'),
    ({"sessions": ["x" * 37, "y"], "on": True}, '"sessions" must be a list'),
    ({"sessions": ["x"], "on": True}, "takes 2 to 4 sessions; 1 were sent"),
    ({"sessions": [], "on": False}, "takes 1 to 4 sessions; 0 were sent"),
    ({"sessions": ["a", "b", "c", "d", "e"], "on": True}, "takes 2 to 4 sessions"),
    ({"sessions": ["x", "x"], "on": True}, "listed twice"),
    ({"sessions": ["x", "y"], "on": True, "cause": "other"}, '"cause" must be one of'),
])
def test_broadcast_bad_input_is_refused_clearly(app, people, body, words):
    clients, _ = people
    response = post(clients["alice"], body)
    assert response.status_code == 400 and words in response.get_json()["error"]
    assert recorded(app) == []


def test_broadcast_stays_off_when_the_trail_refuses(app, people, monkeypatch):
    clients, ids = people

    def refuse(*args, **kwargs):
        raise AuditWriteError("database is locked")

    monkeypatch.setattr("app.terminals.broadcast.record", refuse)
    response = post(clients["alice"], {"sessions": [ids["a1"], ids["a2"]], "on": True})
    assert response.status_code == 503
    assert response.get_json()["error"].startswith("Typing in all panes stays off: the audit trail could not record it")
    assert "database" not in response.get_json()["error"]


def test_broadcast_needs_a_log_in_and_the_csrf_token(app, people):
    clients, ids = people
    stranger = app.test_client()
    token = csrf_from(stranger.get("/login").get_data(as_text=True))
    anonymous = stranger.post("/terminals/broadcast", json={"sessions": [ids["a1"], ids["a2"]], "on": True},
                              headers={"X-CSRFToken": token})
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    missing = clients["alice"].post("/terminals/broadcast", json={"sessions": [ids["a1"], ids["a2"]], "on": True})
    assert missing.status_code == 400
    assert recorded(app) == []
