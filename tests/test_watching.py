"""Watching a live terminal: an admin sees it as it happens, the user sees that they are watched, both audited."""
import json
import os
import re
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.extensions import db
from app.recording.recorder import Recorder
from app.recording.store import LocalStore
from app.terminals import session_events
from app.terminals.commands import CommandDetector, tokens
from app.terminals.live import LiveTerminal
from app.terminals.session_events import SessionMetadata
from app.terminals.watching import MAX_QUEUED, Watcher
from tests.support import browser_login, connect_terminal, new_user, server_app, session_of, wait_for


def trail(server, prefix):
    """Return a live server's events whose action starts with prefix, oldest first."""
    app = server_app(server)
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action.like(prefix + "%"))
                                  .order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        db.engine.dispose()
    return rows


def test_admin_watches_a_users_terminal_live(browser, live_server, sshd):
    name, password = new_user(live_server)
    user = browser.new_context(viewport={"width": 1280, "height": 800})
    admin = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        tab = user.new_page()
        browser_login(tab, live_server, name, password)
        live_server.add_device(live_server.login(name, password), sshd, "watched-box")
        tab.reload()
        tab.locator('button.open-terminal[data-device-name="watched-box"]').first.click()
        screen = tab.locator(".terminal-panel .xterm-rows")
        screen.get_by_text(re.compile(r"gatehouse-test@.*\$")).first.wait_for()
        tab.keyboard.type("echo before-$((2*4))")
        tab.keyboard.press("Enter")
        screen.get_by_text("before-8").wait_for()
        notice = tab.locator(".watched-notice")
        assert notice.is_hidden()
        started = wait_for(lambda: [e for e in trail(live_server, "session.started") if e.actor == name])[-1]

        watch = admin.new_page()
        browser_login(watch, live_server)
        watch.goto(f"{live_server.url}/audit")
        link = watch.locator(f'a[href$="/sessions/{started.session_id}/watch"]')
        link.wait_for()
        if os.environ.get("GATEHOUSE_SHOTS"):
            watch.screenshot(path=f"{os.environ['GATEHOUSE_SHOTS']}/viewer-connected.png")
        with admin.expect_page() as opened:  # the watch view opens beside the viewer
            link.click()
        watch = opened.value
        watch.locator(".watch-status", has_text="Live.").wait_for()
        watched_screen = watch.locator(".watch-screen .xterm-rows")
        watched_screen.get_by_text("before-8").wait_for()  # the screen as it was when watching began
        notice.wait_for(state="visible")
        assert notice.inner_text() == "Being watched by admin"

        tab.keyboard.type("echo live-$((3*5))")
        tab.keyboard.press("Enter")
        typed = time.monotonic()
        screen.get_by_text("live-15").wait_for()
        watched_screen.get_by_text("live-15").wait_for(timeout=1000)  # within a second of the user's Enter
        assert time.monotonic() - typed < 1.0
        shots = os.environ.get("GATEHOUSE_SHOTS")  # look at the pages: GATEHOUSE_SHOTS=/tmp/shots pytest ...
        if shots:
            tab.screenshot(path=f"{shots}/watched-tab.png")
            watch.screenshot(path=f"{shots}/watch-desktop.png")
            watch.set_viewport_size({"width": 390, "height": 844})
            watch.screenshot(path=f"{shots}/watch-phone.png")
        watch.keyboard.type("echo from-the-watcher")  # read-only: nothing reaches the session
        watch.keyboard.press("Enter")
        time.sleep(0.3)
        assert "from-the-watcher" not in screen.inner_text()

        watch.close()
        notice.wait_for(state="hidden")
        events = wait_for(lambda: [e for e in trail(live_server, "session.watch")
                                   if e.session_id == started.session_id and e.action.endswith("ended")]
                          and [e for e in trail(live_server, "session.watch") if e.session_id == started.session_id])
        assert [(e.action, e.actor, e.details["user"]) for e in events] == [
            ("session.watch_started", "admin", name), ("session.watch_ended", "admin", name)]
        assert events[0].severity == "notice"
    finally:
        user.close()
        admin.close()


def test_only_admins_watch(live_server, sshd):
    name, password = new_user(live_server)
    http = live_server.login(name, password)
    device = live_server.add_device(http, sshd, "own-box")
    ws = connect_terminal(f"{live_server.ws_url}/terminals/{device}/ws", http, live_server.url)
    session_id = session_of(ws)
    try:
        assert http.get(f"{live_server.url}/sessions/{session_id}/watch", timeout=10).status_code == 403
        with pytest.raises(Exception):  # the upgrade is refused before any frame
            other = connect_terminal(f"{live_server.ws_url}/sessions/{session_id}/watch/ws", http, live_server.url)
            other.receive(timeout=2)
        admin = live_server.login()
        cross_site = requests.Session()
        cross_site.cookies.update(admin.cookies)
        with pytest.raises(Exception):  # an admin's cookie from another origin opens nothing
            connect_terminal(f"{live_server.ws_url}/sessions/{session_id}/watch/ws", cross_site,
                             "http://evil.example").receive(timeout=2)
        assert not [e for e in trail(live_server, "session.watch") if e.session_id == session_id]
    finally:
        ws.close()


def test_a_watcher_that_falls_behind_is_dropped_not_the_session():
    watcher = Watcher("admin")
    watcher.output(b"x" * (MAX_QUEUED - 10))
    assert watcher.ended is None
    watcher.output(b"y" * 20)
    assert watcher.ended and "could not keep up" in watcher.ended
    watcher.output(b"z")  # ignored from now on, and never raises into the terminal's pump
    assert watcher.reason == "fell_behind"


class Frames:
    """Stands in for a websocket: keeps what is sent."""

    connected = True

    def __init__(self):
        self.sent = []

    def send(self, data):
        self.sent.append(data)


def recorded_terminal(tmp_path, monkeypatch):
    """Return a live terminal with a real recorder and no device, its start and watch events not written."""
    monkeypatch.setattr(session_events, "watch_started", lambda metadata, by: None)
    terminal = LiveTerminal(Frames(), None, None, None, None, {"TERMINAL_RESUME_SECONDS": 0, "TERMINAL_RESUME_BUFFER_KB": 64})
    session_id = str(uuid.uuid4())
    terminal.metadata = SessionMetadata(session_id, 1, "alice", "box", None, datetime.now(timezone.utc))
    terminal.recorder = Recorder(LocalStore(str(tmp_path / "recordings")), session_id, os.urandom(32),
                                 detector=CommandDetector(), tokens=tokens)
    return terminal


def test_output_racing_a_watchers_start_reaches_it_once_and_in_order(tmp_path, monkeypatch):
    terminal = recorded_terminal(tmp_path, monkeypatch)
    terminal.output(b"$ echo before\r\nbefore\r\n$ ")
    recorder = terminal.recorder
    flush, screen_text = recorder.flush, recorder.detector.screen_text

    def flush_after_output(*args, **kwargs):  # output once the watcher joined, before the screen is read: on it
        terminal.output(b"in-flush ")
        return flush(*args, **kwargs)

    def draw_after_output():  # output while the screen is drawn: not on it, so it must follow it
        terminal.output(b"in-draw")
        return screen_text()

    monkeypatch.setattr(recorder, "flush", flush_after_output)
    monkeypatch.setattr(recorder.detector, "screen_text", draw_after_output)
    watcher = Watcher("admin")
    terminal.watch(watcher)
    terminal.output(b" after")
    watcher.end("The session ended.", "session_ended")
    page = Frames()
    watcher.run(page)
    size, screen, *rest = page.sent
    assert json.loads(size) == {"type": "size", "cols": 80, "rows": 24}
    assert b"before" in screen and b"in-flush" in screen and b"in-draw" not in screen
    assert b"".join(frame for frame in rest if isinstance(frame, bytes)) == b"in-draw after"
    assert json.loads(rest[-1]) == {"type": "closed", "message": "The session ended."}
