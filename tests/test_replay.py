"""The session page, its .cast, the links to it and the command search: through the client, then end to end
in Chromium against gunicorn and a real sshd."""
import os
import re
import time
import uuid
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from app.audit.events import record
from app.audit.models import AuditEvent
from app.crypto import recording_key
from app.dbtypes import now_utc
from app.extensions import db
from app.recording.chunks import MAGIC, iter_cast
from app.recording.recorder import Recorder
from app.recording.store import open_store
from app.terminals import session_commands, session_rows
from app.terminals.models import SessionCommand, TerminalSession
from app.terminals.session_events import SessionMetadata
from tests.support import AuthActions, browser_login, logged_in_user, new_user, server_app, wait_for

SHOTS = os.environ.get("GATEHOUSE_SHOTS")  # look at the pages: GATEHOUSE_SHOTS=/tmp/gatehouse-shots pytest ...
COMMANDS = ["echo hello", "grep -c 100%_done log", "echo it's a_b", "ls"]


def app_store():
    """Return the recording store of the app in context."""
    return open_store(current_app.config)


def add_session(user, target="db1 (127.0.0.1:22)", end=True, recorded=True, seal=None):
    """Store a session of user as a terminal does: row, start event, recording, commands, end event with its seal."""
    started = now_utc()  # not before the user's account: the trail's rule would hide it from them
    row = TerminalSession(id=str(uuid.uuid4()), user_id=user.id, actor=user.username, target=target,
                          source_ip="127.0.0.1", worker="elsewhere:1", started_at=started, heartbeat_at=started)
    db.session.add(row)
    db.session.commit()
    facts = SessionMetadata.of(row)
    record("session.started", f"started session with {target}", actor=user.username, user_id=user.id,
           target=target, session_id=facts.id, source_ip="127.0.0.1")
    if recorded:
        recorder = Recorder(app_store(), facts.id, recording_key(), title=target)
        recorder.output(b"$ echo hello\r\nhello\r\n$ ")
        seal = recorder.finish()
    session_commands.save_commands(facts, [(float(i + 1), text) for i, text in enumerate(COMMANDS)])
    if end:
        session_rows.close_row(facts, "client_closed", 12, 3456, started + timedelta(seconds=125), recording=seal)
    return facts.id


def events_of(session_id, action):
    """Return the events of a session with this action, oldest first."""
    return db.session.scalars(select(AuditEvent).where(AuditEvent.session_id == session_id,
                                                       AuditEvent.action == action).order_by(AuditEvent.id)).all()


def test_session_page_and_cast_follow_the_trails_rule(any_app):
    app = any_app
    alice = logged_in_user(app, "alice")
    bob = logged_in_user(app, "bob")
    admin = app.test_client()
    AuthActions(admin).login()
    with app.app_context():
        from app.auth.models import User

        owner = db.session.scalar(select(User).filter_by(username="alice"))
        session_id = add_session(owner)
        open_id = add_session(owner, end=False)
        unrecorded_id = add_session(owner, recorded=False)
        failed_id = add_session(owner, recorded=False, seal={"state": "failed", "error": "cannot create it"})
        plain = b"".join(iter_cast(app_store(), session_id, recording_key()))

    page = alice.get(f"/sessions/{session_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "wasm-unsafe-eval" in page.headers["Content-Security-Policy"]  # the player's WebAssembly, this page only
    assert 'class="seal seal-verified"' in html and "2 min 05 s" in html and "3,456" in html
    assert "client_closed" in html and "127.0.0.1" in html and "complete" in html
    assert [m for m in COMMANDS if f"<code>{m}</code>".replace("'", "&#39;") in html] == COMMANDS
    assert 'href="#t=2.0" data-seek="2.0"' in html
    assert "wasm-unsafe-eval" not in alice.get("/").headers["Content-Security-Policy"]

    cast = alice.get(f"/sessions/{session_id}/recording.cast")
    assert cast.status_code == 200 and cast.mimetype == "application/x-asciicast"
    assert cast.data == plain and "Content-Disposition" not in cast.headers
    download = admin.get(f"/sessions/{session_id}/recording.cast?download=1")
    assert download.data == plain
    assert download.headers["Content-Disposition"] == f'attachment; filename="gatehouse-{session_id}.cast"'
    with app.app_context():
        viewed, exported = events_of(session_id, "recording.viewed"), events_of(session_id, "recording.exported")
        assert [(e.actor, e.target, e.details) for e in viewed] == [
            ("alice", "db1 (127.0.0.1:22)", {"user": "alice", "bytes": len(plain), "complete": True})]
        assert [(e.actor, e.details["bytes"]) for e in exported] == [("admin", len(plain))]

    for path in (f"/sessions/{session_id}", f"/sessions/{session_id}/recording.cast",
                 f"/sessions/{session_id}/recording.cast?download=1", "/sessions/no-such-session"):
        assert bob.get(path).status_code == 404, path  # another user's session does not exist for bob
    assert admin.get(f"/sessions/{session_id}").status_code == 200

    assert 'class="seal seal-in-progress"' in alice.get(f"/sessions/{open_id}").get_data(as_text=True)
    assert f'href="/sessions/{open_id}"' in alice.get("/terminals/connected").get_data(as_text=True)
    with app.app_context():
        app_store().path(open_id).write_bytes(b"")  # as in its first second: created, nothing flushed
    early = alice.get(f"/sessions/{open_id}/recording.cast")
    assert early.status_code == 404 and early.data == b"Nothing is recorded yet; reload in a moment.\n"
    unrecorded = alice.get(f"/sessions/{unrecorded_id}").get_data(as_text=True)
    assert 'class="seal seal-not-recorded"' in unrecorded and "Recording was off" in unrecorded
    failed = alice.get(f"/sessions/{failed_id}").get_data(as_text=True)
    assert 'class="seal seal-failed"' in failed and "cannot create it" in failed

    with app.app_context():
        path = app_store().path(session_id)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x80  # the last chunk's tag
    path.write_bytes(bytes(data))
    assert 'class="seal seal-altered"' in alice.get(f"/sessions/{session_id}").get_data(as_text=True)
    path.unlink()
    path.mkdir()  # something in its place that cannot be read as a file
    assert 'class="seal seal-unreadable"' in alice.get(f"/sessions/{session_id}").get_data(as_text=True)
    path.rmdir()
    missing = alice.get(f"/sessions/{session_id}").get_data(as_text=True)
    assert 'class="seal seal-missing"' in missing and "No recording is kept for this session." in missing
    gone = alice.get(f"/sessions/{session_id}/recording.cast")
    assert gone.status_code == 404 and gone.data == b"No recording is kept for this session.\n"


def test_a_recording_that_breaks_off_ends_the_stream(app, caplog):
    alice = logged_in_user(app, "alice")
    with app.app_context():
        from app.auth.models import User

        owner = db.session.scalar(select(User).filter_by(username="alice"))
        session_id = add_session(owner, recorded=False)
        store = app_store()
        recorder = Recorder(store, session_id, recording_key())
        recorder.output(b"first chunk\r\n")
        recorder.flush()
        recorder.output(b"second chunk\r\n")
        recorder.finish()
        path = store.path(session_id)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01  # inside the last chunk
    path.write_bytes(bytes(data))
    cast = alice.get(f"/sessions/{session_id}/recording.cast")
    assert cast.status_code == 200 and b"first chunk" in cast.data and b"second chunk" not in cast.data
    assert [r.levelname for r in caplog.records if "broke off" in r.getMessage()] == ["ERROR"]
    with app.app_context():
        assert events_of(session_id, "recording.viewed")[0].details["complete"] is False
    data[len(MAGIC) + 30] ^= 0x01  # the first chunk too: nothing to send, an error status says so
    path.write_bytes(bytes(data))
    broken = alice.get(f"/sessions/{session_id}/recording.cast")
    assert broken.status_code == 500 and b"cannot be read" in broken.data


# What the command filter finds among COMMANDS: wildcards and quotes are literal text.
SEARCHES = [
    ("ECHO", ["echo hello", "echo it's a_b"]),  # any case
    ("%", ["grep -c 100%_done log"]),  # a literal percent sign, not "anything"
    ("_", ["grep -c 100%_done log", "echo it's a_b"]),  # a literal underscore, not "one character"
    ("it's", ["echo it's a_b"]),  # quotes are text
    ("\\", []),
    ("0%_d", ["grep -c 100%_done log"]),
    ("%%", []),
    ("e_h", []),
]


def test_command_search_takes_wildcards_literally(any_app):
    app = any_app
    alice = logged_in_user(app, "alice")
    bob = logged_in_user(app, "bob")
    with app.app_context():
        from app.auth.models import User

        session_id = add_session(db.session.scalar(select(User).filter_by(username="alice")))
    for text, found in SEARCHES:
        html = alice.get("/terminals/commands", query_string={"command": text}).get_data(as_text=True)
        shown = [m.replace("&#39;", "'") for m in re.findall(r"<code>(.*?)</code>", html)]
        assert sorted(shown) == sorted(found), text
        assert html.count(f'/sessions/{session_id}#t=') == len(found)
        assert ("No session you may see" in html) == (not found)
        other = bob.get("/terminals/commands", query_string={"command": text}).get_data(as_text=True)
        assert "<code>" not in other  # bob sees none of alice's commands


def test_viewer_embeds_the_command_search_and_links_sessions(app):
    alice = logged_in_user(app, "alice")
    with app.app_context():
        from app.auth.models import User

        session_id = add_session(db.session.scalar(select(User).filter_by(username="alice")))
    html = alice.get("/audit/", query_string={"command": "hello", "user": "alice", "action": "sessions"}).get_data(
        as_text=True)
    assert 'name="command" value="hello"' in html
    embed = re.search(r'<div id="commands-[0-9a-f]{16}" class="command-matches" hx-preserve data-poll\s+'
                      r'hx-get="([^"]+)"', html)
    assert embed and embed.group(1) == "/terminals/commands?user=alice&amp;command=hello"
    links = re.findall(r'<a class="session-link" href="([^"]+)"', html)
    assert links and set(links) == {f"/sessions/{session_id}"}  # session.started and session.ended
    rows = alice.get("/audit/rows", query_string={"command": "hello"}).get_data(as_text=True)
    assert 'hx-get="/terminals/commands?command=hello"' in rows  # the polled table carries it too
    matches = alice.get("/terminals/commands", query_string={"command": "hello", "user": "bob"}).get_data(as_text=True)
    assert "(0)" in matches  # the viewer's user filter narrows the commands too
    bad = alice.get("/audit/", query_string={"command": "x\x01y"})
    assert bad.status_code == 422 and "command: control characters may not be used" in bad.get_data(as_text=True)
    assert "<section" not in alice.get("/terminals/commands").get_data(as_text=True)  # no filter, no list


def live_db(server):
    """Return an app bound to a live server's database (for reading what the server wrote)."""
    return server_app(server)


def read_live(server, query):
    """Run a select against a live server's database; return the rows, detached."""
    app = live_db(server)
    with app.app_context():
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        db.engine.dispose()
    return rows


def shoot(page, name, width, height):
    """Save a screenshot of the page at a size when GATEHOUSE_SHOTS names a folder."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)  # the player refits to the new width
        page.screenshot(path=f"{SHOTS}/{name}-{width}x{height}.png", full_page=True)


def replay_offset(server, session_id, prefix):
    """Return the offset of the first command of a session that starts with prefix, as the page writes it."""
    commands = read_live(server, select(SessionCommand).where(SessionCommand.session_id == session_id,
                                                              SessionCommand.text.startswith(prefix)))
    return str(commands[0].offset_s)


def shoot_fresh(page, url, name, width, height, ready):
    """Open url in a new tab of that size and save a screenshot of it when GATEHOUSE_SHOTS names a folder."""
    if SHOTS:
        fresh = page.context.new_page()
        fresh.set_viewport_size({"width": width, "height": height})
        fresh.goto(url)
        fresh.locator(ready).first.wait_for()
        fresh.wait_for_timeout(300)
        fresh.screenshot(path=f"{SHOTS}/{name}-{width}x{height}.png", full_page=True)
        fresh.close()


PROMPT = re.compile(r"gatehouse-test@.*\$")


def type_line(page, screen, text, expect=None, prompt=True):
    """Type a line into the browser terminal, press Enter, wait for what it prints and for the next prompt.

    Keys typed before the shell's line editor is back reach the terminal's cooked mode, where a
    Backspace erases part of an arrow key's escape sequence: each line waits for its prompt first."""
    prompts = screen.get_by_text(PROMPT).count()
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    if expect:
        screen.get_by_text(expect).first.wait_for()
    if prompt:
        wait_for(lambda: screen.get_by_text(PROMPT).count() > prompts)


def type_the_story(page, server, label):
    """In a browser terminal: a plain command, an edited line, a recalled one, a hidden password; return the session id."""
    page.locator(f'button.open-terminal[data-device-name="{label}"]').first.click()
    screen = page.locator(".terminal-panel .xterm-rows")
    screen.get_by_text(PROMPT).first.wait_for()
    type_line(page, screen, "echo hello", re.compile(r"^hello\s*$"))
    type_line(page, screen, "ls")
    prompts = screen.get_by_text(PROMPT).count()
    page.keyboard.type("echo wrold")  # fixed on the line: two left, two back, retyped
    for key in ("ArrowLeft", "ArrowLeft", "Backspace", "Backspace"):
        page.keyboard.press(key)
    page.keyboard.type("or")
    page.keyboard.press("Enter")
    screen.get_by_text(re.compile(r"^world\s*$")).first.wait_for()
    wait_for(lambda: screen.get_by_text(PROMPT).count() > prompts)
    time.sleep(3)  # a pause in the recording: the idle time limit shortens it, seeks must still land right
    prompts = screen.get_by_text(PROMPT).count()
    page.keyboard.press("ArrowUp")  # history recall: echo world again
    page.keyboard.press("Enter")
    wait_for(lambda: len(screen.get_by_text(re.compile(r"^world\s*$")).all()) == 2)
    wait_for(lambda: screen.get_by_text(PROMPT).count() > prompts)
    type_line(page, screen, "read -s -p 'secret: ' S", "secret:", prompt=False)
    time.sleep(0.3)  # read -s may flush input typed before it turned echo off
    type_line(page, screen, "hunter2")
    type_line(page, screen, "echo done-$((2*3))", "done-6")
    started = wait_for(lambda: read_live(server, select(AuditEvent).where(
        AuditEvent.action == "session.started", AuditEvent.target.startswith(label))))[-1]
    page.locator('.tab button.tab-close').click()
    page.locator("#confirm-dialog[open] .confirm-yes").click()  # a running session asks before it ends
    wait_for(lambda: read_live(server, select(AuditEvent).where(
        AuditEvent.action == "session.ended", AuditEvent.session_id == started.session_id)))
    return started.session_id


def test_a_session_replays_in_the_browser_and_is_found_by_its_commands(page, live_server, sshd):
    browser_login(page, live_server)
    http = live_server.login()
    label = "replay-" + uuid.uuid4().hex[:6]
    live_server.add_device(http, sshd, label)
    page.reload()
    session_id = type_the_story(page, live_server, label)

    problems = []  # the console of the session page: a CSP refusal or a player error shows up here
    page.on("console", lambda message: problems.append(message.text) if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{live_server.url}/audit/?action=sessions")
    link = page.locator(f'a.session-link[href$="/sessions/{session_id}"]').first
    link.click()
    page.wait_for_url(f"**/sessions/{session_id}")
    replay = page.locator("#replay")
    replay.locator(".replay-screen .ap-player").wait_for()
    assert replay.locator(".replay-head .seal").inner_text() == "verified"
    listed = replay.locator(".commands code").all_inner_texts()
    assert listed == ["echo hello", "ls", "echo world", "echo world", "read -s -p 'secret: ' S",
                      "echo done-$((2*3))"]
    player = replay.locator(".replay-screen")
    lines = player.locator(".ap-line")
    replay.locator(".commands a").nth(1).click()  # ls: the screen then shows hello's output
    lines.filter(has_text=re.compile(r"^hello\s*$")).wait_for()
    assert page.url.endswith("#t=" + replay.locator(".commands a").nth(1).get_attribute("data-seek"))
    elapsed = player.locator(".ap-time-elapsed")
    before = elapsed.inner_text()
    replay.locator(".commands a").nth(5).click()  # the last one, after the pause
    lines.filter(has_text=re.compile(r"^secret:")).wait_for()
    assert elapsed.inner_text() != before and not lines.filter(has_text=re.compile(r"^done-6")).count()
    page.select_option('select[name="idle"]', "")  # idle limit off, then 1 s: the position stays
    lines.filter(has_text=re.compile(r"^secret:")).wait_for()
    page.select_option('select[name="idle"]', "1")
    lines.filter(has_text=re.compile(r"^secret:")).wait_for()
    replay.locator(".commands a").nth(3).click()  # the recalled one, after the pause the idle limit shortens
    wait_for(lambda: lines.filter(has_text=re.compile(r"^world\s*$")).count() == 1)
    assert not lines.filter(has_text=re.compile(r"^secret:")).count()
    page.select_option('select[name="speed"]', "4")
    assert replay.locator(".replay-status").inner_text() == ""
    assert problems == []  # no CSP refusal (the player compiles WebAssembly), no player error
    html = page.content()

    download = http.get(f"{live_server.url}/sessions/{session_id}/recording.cast?download=1", timeout=10)
    assert download.status_code == 200 and b"hello" in download.content
    assert download.headers["Content-Disposition"] == f'attachment; filename="gatehouse-{session_id}.cast"'
    commands = read_live(live_server, select(SessionCommand).where(SessionCommand.session_id == session_id))
    assert [c.text for c in commands] == listed
    served = http.get(f"{live_server.url}/sessions/{session_id}", timeout=10).text
    for where in (download.text, html, served, " ".join(c.text for c in commands)):
        assert "hunter2" not in where  # not in the output, the markers, the command table or the page
    viewed = wait_for(lambda: read_live(live_server, select(AuditEvent).where(
        AuditEvent.session_id == session_id, AuditEvent.action.like("recording.%")).order_by(AuditEvent.id)))
    assert [(e.action, e.actor, e.target.startswith(label)) for e in viewed] == [
        ("recording.viewed", "admin", True), ("recording.exported", "admin", True)]  # one fetch, however many players
    assert viewed[1].details == {"user": "admin", "bytes": len(download.content), "complete": True}

    name, password = new_user(live_server)
    other = live_server.login(name, password)
    for path in (f"/sessions/{session_id}", f"/sessions/{session_id}/recording.cast",
                 "/terminals/commands?command=hello"):
        response = other.get(live_server.url + path, timeout=10)
        assert response.status_code == (200 if "commands" in path else 404) and session_id not in response.text

    page.goto(f"{live_server.url}/audit/?command=WORLD&action=sessions")
    matches = page.locator(".command-matches")
    matches.locator("tbody tr").first.wait_for()
    found = matches.locator("tbody tr", has=page.locator(f'a[href*="/sessions/{session_id}#t="]'))
    assert found.locator("code").all_inner_texts() == ["echo world", "echo world"]
    shoot(page, "viewer-command", 1280, 800)
    shoot(page, "viewer-command", 390, 844)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.evaluate("() => { document.querySelector('.command-matches').keptAcrossPolls = true; }")
    updated = page.locator(".audit-status time").inner_text()
    wait_for(lambda: page.locator(".audit-status time").inner_text() != updated)  # the table was polled
    assert page.evaluate("() => document.querySelector('.command-matches').keptAcrossPolls") is True
    assert found.count() == 2  # the same element, with its rows: kept, not emptied and fetched again
    page.fill('input[name="command"]', "%")
    page.press('input[name="command"]', "Enter")
    page.wait_for_url("**command=%25**")
    matches.locator("h3").wait_for()
    assert all("%" in text for text in matches.locator("tbody code").all_inner_texts())
    assert not matches.locator(f'a[href*="/sessions/{session_id}#t="]').count()

    page.goto(f"{live_server.url}/audit/?command=world")
    with page.context.expect_page() as opened:  # the replay opens beside the viewer, at the moment
        page.locator(f'.command-matches a[href*="/sessions/{session_id}#t="]').first.click()
    moment = opened.value
    moment.locator(".replay-screen .ap-line", has_text=re.compile(r"^hello\s*$")).wait_for()
    assert moment.locator(".ap-time-elapsed").inner_text() not in ("", "00:00", "0:00")
    moment.close()

    page.goto(live_server.url + "/")  # the panel over the terminals: a changed field filters at once
    page.click("#audit-icon")
    panel = page.locator("#audit-dialog")
    panel.locator('input[name="command"]').fill("hello")
    panel.locator('input[name="command"]').press("Tab")
    link = panel.locator(f'.command-matches a[href*="/sessions/{session_id}#t="]')
    link.wait_for()
    assert link.get_attribute("target") == "_blank"  # the terminals under the panel keep running
    assert panel.locator(f'a.session-link[href$="/sessions/{session_id}"]').first.get_attribute("target") == "_blank"

    moment_url = f"{live_server.url}/sessions/{session_id}#t=" + replay_offset(live_server, session_id, "echo done")
    shoot_fresh(page, moment_url, "session", 1280, 800, ".ap-line >> text=echo done")  # the shots last: each load
    shoot_fresh(page, moment_url, "session", 390, 844, ".ap-line >> text=echo done")  # is one more recording.viewed
