"""The watch page you can act from, in a real headless Chromium on a real sshd: the session's facts and its commands
beside the screen, growing as the user types; Terminate with a reason (confirmed, kept in the trail, the user's
terminal ends, the page says so); Stop watching and Watch again; axe-core clean in both themes, no sideways scroll
on a phone. Over HTTP: the watch rule guards the polled part, the reason is length-checked and shown as text."""
import json
import os
import re
import uuid

import pytest
import requests
import simple_websocket
from sqlalchemy import select

from app.extensions import db
from app.terminals.models import TerminalSession
from app.terminals.watch_facts import REASON_MAX
from tests.support import (WAIT_SECONDS, browser_login, live_events, new_user, open_terminal, read_until,
                           server_app, wait_for)
from tests.test_accessibility import AXE, NAMELESS, violations

SHOTS = os.environ.get("GATEHOUSE_SHOTS")  # look at the pages: GATEHOUSE_SHOTS=/tmp/shots pytest ...
HOSTILE_REASON = 'change window <b>closed</b> & "ticket" <script>window.__xss=1</script>'


def users_terminal(server, sshd):
    """Open a terminal as a new user (a websocket, as their browser would); return (websocket, session id, name)."""
    name, password = new_user(server)
    http = server.login(name, password)
    device = f"watched-{uuid.uuid4().hex[:6]}"
    ws = open_terminal(f"{server.ws_url}/terminals/{server.add_device(http, sshd, device)}/ws", http, server.url)
    started = wait_for(lambda: [e for e in live_events(server, "session.started") if e.actor == name])
    return ws, started[-1].session_id, name


@pytest.fixture
def watched(live_server, sshd):
    """A user's open terminal: (websocket, session id, user name); closed after the test if still open."""
    ws, session_id, name = users_terminal(live_server, sshd)
    yield ws, session_id, name
    if ws.connected:
        ws.close()


def controls_until_closed(ws):
    """Read a terminal's frames until the server closes it; return its control messages."""
    controls = []
    with pytest.raises(simple_websocket.ConnectionClosed):
        for _ in range(WAIT_SECONDS * 5):
            frame = ws.receive(timeout=0.2)
            if isinstance(frame, str):
                controls.append(json.loads(frame))
    return controls


def session_events(server, session_id, action):
    """Return the events of one session with this action, oldest first."""
    return [e for e in live_events(server, action) if e.session_id == session_id]


def open_watch(browser, server, session_id, width=1440, height=900, scheme="light"):
    """Log an admin in (axe-core in every page) and open the watch page; return (context, page) once it is live."""
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    browser_login(page, server)
    page.goto(f"{server.url}/sessions/{session_id}/watch")
    page.wait_for_load_state("load")
    page.locator(".watch-status", has_text="Live.").wait_for()
    return context, page


def test_the_admin_sees_facts_and_commands_then_terminates_with_a_reason(browser, live_server, watched):
    ws, session_id, name = watched
    context, page = open_watch(browser, live_server, session_id)
    try:
        facts = page.locator("#watch-facts")
        assert name in facts.inner_text() and "watched-" in facts.inner_text()
        assert "127.0.0.1" in facts.inner_text() and "attached" in facts.inner_text()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d", facts.locator("time").first.inner_text())
        ticking = page.locator(".watch-duration").inner_text()
        page.wait_for_function("t => document.querySelector('.watch-duration').textContent !== t", arg=ticking)

        page.locator("#watch-commands li code", has_text="echo ready-$((6*7))").wait_for()  # typed on opening
        ws.send(b"echo watched-$((6*7))\n")
        read_until(ws, b"watched-42")
        page.locator(".watch-screen .xterm-rows").get_by_text("watched-42").first.wait_for()
        page.locator("#watch-commands li code", has_text="echo watched-$((6*7))").wait_for()  # the list grew
        ws.send(b"echo second-$((2*2))\n")
        read_until(ws, b"second-4")
        page.locator("#watch-commands li").nth(2).wait_for()
        assert page.locator("#watch-commands code").all_inner_texts() == [
            "echo second-$((2*2))", "echo watched-$((6*7))", "echo ready-$((6*7))"]  # newest first
        assert "(3)" in page.locator("#watch-commands h2").inner_text()

        # By keyboard: Enter in the reason asks; Escape keeps the session. A reason that cannot be kept is refused
        # with why, and stays in its field.
        page.fill("#terminate-reason", "bad\u202ereason")
        page.press("#terminate-reason", "Enter")
        dialog = page.locator("#confirm-dialog[open]")
        dialog.wait_for()
        page.keyboard.press("Escape")
        page.locator("#confirm-dialog:not([open])").wait_for(state="attached")
        page.press("#terminate-reason", "Enter")
        dialog.locator(".confirm-yes").click()
        page.locator("#terminate-error [role=alert]", has_text="U+202E RIGHT-TO-LEFT OVERRIDE").wait_for()
        assert page.input_value("#terminate-reason") == "bad\u202ereason"
        assert not session_events(live_server, session_id, "session.terminated") and ws.connected

        page.fill("#terminate-reason", HOSTILE_REASON)
        page.click(".watch-terminate button[type=submit]")
        assert page.locator("#terminate-error").inner_text() == ""  # a new try clears the last refusal
        assert dialog.locator(".confirm-question").inner_text() == (
            f"Terminate the session of {name} with {facts.locator('dd').nth(1).inner_text()}? Their terminal closes at "
            f"once. Reason: “{HOSTILE_REASON}”.")
        assert dialog.locator(".confirm-yes").inner_text() == "Terminate"
        if SHOTS:
            page.screenshot(path=f"{SHOTS}/watch-confirm.png")
        dialog.locator(".confirm-yes").click()

        closed = [c for c in controls_until_closed(ws) if c["type"] == "closed"]
        assert closed and closed[-1]["reason"] == "terminated"  # the user's terminal ended
        assert closed[-1]["message"] == "An admin ended this session: " + HOSTILE_REASON  # their tab says why
        page.locator(".watch.is-ended").wait_for()
        page.locator(".watch-status", has_text="session ended").wait_for()
        assert page.locator(".watch-terminate button").is_disabled()
        assert page.locator(".watch-terminate input").is_disabled()
        assert page.locator(".watch-stop").is_hidden()
        replay = page.locator(".watch-ended a", has_text="Replay")
        assert replay.is_visible() and replay.get_attribute("href") == f"/sessions/{session_id}"
        how = page.locator("#watch-facts .end-reason")
        how.get_by_text("An admin ended it.").wait_for()
        assert how.locator("q").inner_text() == HOSTILE_REASON  # text, not markup
        assert page.evaluate("window.__xss") is None and page.locator("#watch-facts b, #watch-facts script").count() == 0
        if SHOTS:
            page.screenshot(path=f"{SHOTS}/watch-ended.png")

        terminated = session_events(live_server, session_id, "session.terminated")
        assert [(e.actor, e.details["by"], e.details["reason"], e.details["user"]) for e in terminated] == [
            ("admin", "admin", HOSTILE_REASON, name)]
        assert terminated[0].message.endswith(": " + HOSTILE_REASON)
        ended = wait_for(lambda: session_events(live_server, session_id, "session.ended"))
        assert ended[0].details["reason"] == "terminated"
    finally:
        context.close()


def test_stop_watching_ends_the_watch_and_watch_again_starts_another(browser, live_server, watched):
    ws, session_id, name = watched
    context, page = open_watch(browser, live_server, session_id)
    try:
        told = []  # the "watched" messages the user's tab receives
        wait_for(lambda: told.extend(c["by"] for c in _controls(ws) if c.get("type") == "watched") or told)
        assert told[-1] == ["admin"]  # the user is told
        page.click(".watch-stop")
        page.locator(".watch.is-stopped").wait_for()
        assert page.locator(".watch-status").inner_text() == "You stopped watching."
        assert page.locator(".watch-again").evaluate("e => e === document.activeElement")
        if SHOTS:
            page.screenshot(path=f"{SHOTS}/watch-stopped.png")
        trail = page.locator(".watch-stopped a")
        assert trail.get_attribute("href") == "/audit/" and trail.is_visible()
        ended = wait_for(lambda: session_events(live_server, session_id, "session.watch_ended"))
        assert [(e.actor, e.details["by"], e.details["reason"]) for e in ended] == [("admin", "admin", "left")]
        wait_for(lambda: told.extend(c["by"] for c in _controls(ws) if c.get("type") == "watched") or told[-1] == [])
        assert ws.connected  # the session goes on

        page.click(".watch-again")
        page.locator(".watch-status", has_text="Live.").wait_for()
        assert page.locator(".watch.is-live").count() == 1
        wait_for(lambda: len(session_events(live_server, session_id, "session.watch_started")) == 2)
        ws.send(b"echo again-$((5*5))\n")
        page.locator(".watch-screen .xterm-rows").get_by_text("again-25").first.wait_for()
    finally:
        context.close()


def _controls(ws):
    """Return the control messages a terminal's websocket received within half a second."""
    found = []
    while True:
        frame = ws.receive(timeout=0.5)
        if frame is None:
            return found
        if isinstance(frame, str):
            found.append(json.loads(frame))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_watch_page_is_accessible_and_fits_a_phone(browser, live_server, watched, scheme):
    ws, session_id, _ = watched
    ws.send(b"echo looked-$((3*3))\n")
    read_until(ws, b"looked-9")
    context, page = open_watch(browser, live_server, session_id, scheme=scheme)
    try:
        page.locator("#watch-commands li").first.wait_for()
        page.locator(".watch-screen .xterm-rows").get_by_text("looked-9").first.wait_for()  # the screen as it is
        assert violations(page) == []
        assert page.evaluate(NAMELESS) == []
        screen = page.locator(".watch-screen").bounding_box()
        side = page.locator("#watch-facts").bounding_box()
        assert side["x"] >= screen["x"] + screen["width"]  # desktop: the facts beside the screen
        page.set_viewport_size({"width": 390, "height": 844})
        page.locator(".watch-screen").evaluate("e => new Promise(r => requestAnimationFrame(() => r()))")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screen = page.locator(".watch-screen").bounding_box()
        side = page.locator("#watch-facts").bounding_box()
        assert side["y"] >= screen["y"] + screen["height"] and screen["width"] <= 390  # phone: stacked
        assert violations(page) == []
    finally:
        context.close()


# ---- over HTTP ----------------------------------------------------------------------------------------------------

def test_the_polled_part_keeps_to_the_watch_rule(live_server, watched):
    _, session_id, name = watched
    user = live_server.login(*new_user(live_server))
    for path in ("watch", "watch/side"):
        assert user.get(f"{live_server.url}/sessions/{session_id}/{path}", timeout=10).status_code == 403
        anonymous = requests.get(f"{live_server.url}/sessions/{session_id}/{path}", timeout=10, allow_redirects=False)
        assert anonymous.status_code in (302, 401)
    admin = live_server.login()
    side = admin.get(f"{live_server.url}/sessions/{session_id}/watch/side", timeout=10)
    assert side.status_code == 200 and 'id="watch-commands"' in side.text
    assert 'hx-swap-oob="true"' in side.text and f"<dd>{name}</dd>" in side.text  # the facts come along
    assert 'hx-trigger="every 2s' in side.text  # open: it polls on
    assert admin.get(f"{live_server.url}/sessions/{uuid.uuid4()}/watch/side", timeout=10).status_code == 404


@pytest.mark.parametrize("reason, why", [
    ("x" * (REASON_MAX + 1), f"The reason is {REASON_MAX + 1} characters long; at most {REASON_MAX} are kept."),
    ("quiet\u202eplease", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("two\nlines", "U+000A"),
])
def test_a_reason_that_cannot_be_kept_is_refused_and_nothing_ends(live_server, watched, reason, why):
    ws, session_id, _ = watched
    admin = live_server.login()
    response = admin.post(f"{live_server.url}/terminals/sessions/{session_id}/terminate", data={"reason": reason},
                          headers={"X-CSRFToken": live_server.csrf(admin)}, timeout=10)
    assert response.status_code == 422 and why in response.text and 'role="alert"' in response.text
    assert "<script" not in response.text
    assert not session_events(live_server, session_id, "session.terminated")
    app = server_app(live_server)
    with app.app_context():
        row = db.session.scalar(select(TerminalSession).where(TerminalSession.id == session_id))
        assert not row.terminate_requested and row.ended_at is None
        db.engine.dispose()
    ws.send(b"echo still-$((7*7))\n")
    read_until(ws, b"still-49")  # the session goes on


def test_the_reason_is_kept_at_its_limit_and_shown_as_text(live_server, watched):
    ws, session_id, _ = watched
    admin = live_server.login()
    reason = ("<i>" + "r" * REASON_MAX)[:REASON_MAX]
    response = admin.post(f"{live_server.url}/terminals/sessions/{session_id}/terminate",
                          data={"reason": f"  {reason}  "}, headers={"X-CSRFToken": live_server.csrf(admin)}, timeout=10)
    assert response.status_code == 204
    controls_until_closed(ws)
    wait_for(lambda: session_events(live_server, session_id, "session.ended"))
    assert session_events(live_server, session_id, "session.terminated")[0].details["reason"] == reason  # trimmed
    side = admin.get(f"{live_server.url}/sessions/{session_id}/watch/side", timeout=10).text
    assert "&lt;i&gt;" in side and "<i>" not in side
    assert "hx-trigger" not in side  # ended: the part stops polling
    page = admin.get(f"{live_server.url}/sessions/{session_id}/watch", timeout=10).text
    assert 'class="watch is-ended"' in page and "This session has ended." in page
