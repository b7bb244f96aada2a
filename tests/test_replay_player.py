"""The session page's player in a real headless Chromium, on a session recorded through a live server against the
real sshd with two long pauses: it fills its box at desktop and phone sizes, the command list and the player's
markers and clock share one (idle-compressed) timeline, and the keys play, pause, step and jump between commands."""
import json
import os
import re
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support import browser_login, live_events, open_terminal, read_until, wait_for
from tests.test_accessibility import AXE, NAMELESS, SIZES, violations

SHOTS = os.environ.get("GATEHOUSE_SHOTS")  # look at the pages: GATEHOUSE_SHOTS=/tmp/gatehouse-shots pytest ...
PAUSE = 3.5  # seconds of nothing before two of the commands: the default idle time limit (2 s) shortens them
# (what is typed, what its output ends with), in order; a pause before those marked True
LINES = [(b"echo one-$((1+1))", b"one-2", True), (b"ls /etc | head -n 3; echo two-$((2+2))", b"two-4", True),
         (b"echo three-$((3*3))", b"three-9", False)]
TIME = "() => document.getElementById('replay').replay.player().getCurrentTime()"  # the player's own clock
PLAYING = "() => document.getElementById('replay').replay.playing()"
SIDEWAYS = "() => { const r = document.getElementById('replay'); return r.scrollWidth - r.clientWidth; }"
FULL = "() => (document.fullscreenElement ? document.fullscreenElement.classList.contains('ap-wrapper') : null)"


@pytest.fixture(scope="module")
def recorded(live_server, sshd):
    """Record a terminal session with pauses through the live server; return its id."""
    http = live_server.login()
    device_id = live_server.add_device(http, sshd, "player-" + uuid.uuid4().hex[:6])
    ws = open_terminal(live_server.ws_url + f"/terminals/{device_id}/ws", http, live_server.url)
    try:
        for line, answer, pause in LINES:
            if pause:
                time.sleep(PAUSE)  # the pause is what is recorded here, not a wait for something
            ws.send(line + b"\n")
            read_until(ws, answer)
        ws.send(b"exit\n")
        wait_for(lambda: [e for e in live_events(live_server, "session.ended")
                          if e.target.startswith("player-")])
    finally:
        if ws.connected:
            ws.close()
    return [e for e in live_events(live_server, "session.ended") if e.target.startswith("player-")][-1].session_id


def open_replay(browser, server, session_id, size="desktop", scheme="light"):
    """Log in a fresh context of that size and open the session page; return its context and page, player ready."""
    context = browser.new_context(viewport=SIZES[size], color_scheme=scheme)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    browser_login(page, server)
    page.goto(f"{server.url}/sessions/{session_id}")
    page.locator(".replay-screen .ap-term").wait_for()
    page.wait_for_load_state("load")
    return context, page


def shot(page, name):
    """Save a screenshot of the page when GATEHOUSE_SHOTS names a folder."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


@pytest.mark.parametrize("size", ["desktop", "phone"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_player_fills_its_box(browser, live_server, recorded, size, scheme):
    context, page = open_replay(browser, live_server, recorded, size, scheme)
    try:
        box = page.locator(".replay-screen").bounding_box()
        term = page.locator(".replay-screen .ap-term").bounding_box()
        assert term["width"] >= 0.9 * box["width"], (term, box)
        assert box["x"] + box["width"] <= SIZES[size]["width"]
        assert term["y"] + term["height"] <= SIZES[size]["height"] + (400 if size == "phone" else 0)
        widest = page.evaluate("() => document.documentElement.scrollWidth")
        assert widest <= SIZES[size]["width"]  # nothing wider than the screen, nor than the page's own scroller
        assert page.evaluate(SIDEWAYS) == 0
        if size == "phone":  # facts and commands under the player
            assert page.locator(".replay-side").bounding_box()["y"] > box["y"] + box["height"]
        assert violations(page) == []
        assert page.evaluate(NAMELESS) == []
        shot(page, f"player-{size}-{scheme}")
        page.get_by_role("button", name="Full screen").click()  # the whole screen: the player fits it
        wait_for(lambda: page.evaluate(FULL) is True)
        wait_for(lambda: max(page.locator(".ap-term").bounding_box()[side] / SIZES[size][side]
                             for side in ("width", "height")) >= 0.85)
        page.keyboard.press("f")  # and back
        wait_for(lambda: page.evaluate(FULL) is None)
    finally:
        context.close()


def played(times, t, limit):
    """Return where a moment of the recording falls in playback when each gap over limit counts as limit."""
    previous = shift = 0.0
    for time_ in times:
        if time_ > t:
            break
        shift += max(0.0, time_ - previous - limit)
        previous = time_
    return t - shift - max(0.0, t - previous - limit)


def clock(seconds):
    """Write seconds as the player's clock does."""
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def expected_timeline(server, session_id, limit):
    """Return [(text, moment in playback)] of the session's commands, worked out here from its .cast."""
    http = server.login()
    cast = http.get(f"{server.url}/sessions/{session_id}/recording.cast", timeout=10).text
    events = [json.loads(line) for line in cast.splitlines()[1:] if line.startswith("[")]
    times = [e[0] for e in events]
    return [(e[2], played(times, e[0], limit)) for e in events if e[1] == "m"], played(times, times[-1], limit), times[-1]


def test_the_list_and_the_player_share_one_timeline(browser, live_server, recorded):
    commands, playback, whole = expected_timeline(live_server, recorded, 2)
    assert whole - playback > 2 * (PAUSE - 2) - 0.5  # the two pauses are shortened to the limit
    context, page = open_replay(browser, live_server, recorded)
    try:
        assert page.locator('select[name="idle"]').input_value() == "2"
        summary = page.locator(".replay-timeline")
        assert summary.inner_text() == (f"Pauses over 2 s shortened: {clock(whole)} of recording plays in "
                                        f"{clock(playback)}.")
        links = page.locator(".commands a[data-seek]")
        assert links.locator("code").all_inner_texts() == [text for text, _ in commands]
        assert links.locator(".offset").all_inner_texts() == [clock(at) for _, at in commands]
        tips = page.locator(".replay-screen .ap-marker-container .ap-tooltip").evaluate_all(
            "tips => tips.map(t => t.textContent)")
        assert tips == [f"{clock(at)} - {text}" for text, at in commands]  # the player's markers: the same moments
        for index in (1, 2):  # after one pause, after both
            links.nth(index).click()
            wait_for(lambda: abs(page.evaluate(TIME) - commands[index][1]) < 0.2)
        page.locator(".replay-screen .ap-line", has_text=re.compile(r"^one-2\s*$")).wait_for()

        page.select_option('select[name="idle"]', "")  # off: the list counts recording time, as the player does
        wait_for(lambda: summary.inner_text() == f"Pauses play at full length: {clock(whole)}.")
        assert links.locator(".offset").all_inner_texts() == [clock(float(s)) for s in
                                                             links.evaluate_all("l => l.map(a => a.dataset.seek)")]
        links.nth(2).click()
        wait_for(lambda: abs(page.evaluate(TIME) - float(links.nth(2).get_attribute("data-seek"))) < 0.2)
        assert page.locator(".replay-status").inner_text() == ""
    finally:
        context.close()


def command_at(page, index):
    """Return the moment in playback of the index-th listed command, as the page holds it."""
    return page.evaluate(f"() => document.getElementById('replay').replay.commands[{index}].at")


def test_keys_jump_between_commands_step_play_and_pause(browser, live_server, recorded):
    commands, _, _ = expected_timeline(live_server, recorded, 2)
    context, page = open_replay(browser, live_server, recorded)
    try:
        status, lines = page.locator(".replay-status"), page.locator(".replay-screen .ap-line")
        links = page.locator(".commands a[data-seek]")
        page.evaluate("() => document.activeElement.blur()")  # the page itself has the keys
        page.keyboard.press("]")
        first = f"command 1 of {len(commands)}: {commands[0][0]} at {clock(commands[0][1])}"
        expect(status).to_have_text(first)
        page.keyboard.press("]")
        wait_for(lambda: abs(page.evaluate(TIME) - commands[1][1]) < 0.2)
        assert status.inner_text() == f"command 2 of {len(commands)}: {commands[1][0]} at {clock(commands[1][1])}"
        lines.filter(has_text=re.compile(r"^ready-42\s*$")).wait_for()  # the output of the command before
        assert not lines.filter(has_text=re.compile(r"^one-2\s*$")).count()
        page.keyboard.press("n")
        wait_for(lambda: abs(page.evaluate(TIME) - commands[2][1]) < 0.2)
        lines.filter(has_text=re.compile(r"^one-2\s*$")).wait_for()
        assert links.nth(2).get_attribute("aria-current") == "true" and links.nth(1).get_attribute("aria-current") is None
        page.keyboard.press("[")
        wait_for(lambda: abs(page.evaluate(TIME) - commands[1][1]) < 0.2)
        assert links.nth(1).get_attribute("aria-current") == "true"

        page.keyboard.press("ArrowLeft")  # 5 s back: the start
        wait_for(lambda: page.evaluate(TIME) < 0.05 and status.inner_text() == "at 00:00")
        page.keyboard.press("ArrowRight")
        wait_for(lambda: page.evaluate(TIME) > 2)

        speed = page.locator('select[name="speed"]')  # typing in a form control stays typing there
        speed.focus()
        before, said = page.evaluate(TIME), status.inner_text()
        page.keyboard.press("]")
        page.keyboard.press("[")
        assert page.evaluate(TIME) == before and status.inner_text() == said and speed.input_value() == "1"

        page.evaluate("() => document.activeElement.blur()")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("]")
        wait_for(lambda: abs(page.evaluate(TIME) - commands[0][1]) < 0.2)
        page.keyboard.press(" ")  # play: playback reaches the next command and the list follows it
        play = page.locator(".replay-screen .ap-playback-button")
        wait_for(lambda: page.evaluate(PLAYING) and play.get_attribute("aria-label") == "Pause")
        wait_for(lambda: links.nth(1).get_attribute("aria-current") == "true")
        page.keyboard.press(" ")  # pause
        wait_for(lambda: not page.evaluate(PLAYING) and play.get_attribute("aria-label") == "Play")
        stopped = page.evaluate(TIME)
        page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        assert page.evaluate(TIME) == stopped
        page.locator(".replay-screen .ap-wrapper").focus()  # the player's own focus: one key, one step
        page.keyboard.press("]")
        wait_for(lambda: abs(page.evaluate(TIME) - commands[2][1]) < 0.2)
        assert status.inner_text().startswith("command 3 of")
    finally:
        context.close()
