"""A watch follows its watcher's log-in and role: a log-out, a disabled account, a lost admin role or a log-in ended
anywhere closes the watch socket within about a second, with the reason on the watch page and in the trail, under
two gevent workers (the change may be handled by, or made outside, the process that holds the watch)."""
import json
import re
import time

import pytest
from simple_websocket import ConnectionClosed
from sqlalchemy import select

from app.auth import logins
from app.auth.models import LoginSession, User
from app.extensions import db
from app.terminals.watchers import WATCH_ENDS
from tests.support import (PG_URL, WAIT_SECONDS, connect_terminal, console, live_events, open_user_session,
                           read_until, reset_postgres, server_app, wait_for)

PASSWORD = "watcher-password-long"
# What the watch page says for each way the watcher's standing ends, and the reason the trail records.
ENDS = {
    "logged_out": ("You logged out; watching stopped.", "logged_out"),
    "disabled": ("Your account was disabled; watching stopped.", "user_disabled"),
    "demoted": ("You are no longer an admin; watching stopped.", "not_admin"),
    "ended_elsewhere": ("An admin ended your log-in; watching stopped.", "ended_by_admin"),
}


@pytest.fixture(scope="module")
def two_workers(module_live_servers):
    """The app under gunicorn with two gevent workers on PostgreSQL (a watch and a log-out may meet in either)."""
    return module_live_servers(DATABASE_URL=reset_postgres(PG_URL), WEB_CONCURRENCY="2")


def new_admin(server):
    """Create an admin through the console; return its name."""
    name = "w-" + str(time.monotonic_ns())[-8:]
    console(server, "users", "create", name, "--admin", "--password", PASSWORD, "--no-must-change")
    return name


def user_id(server, name):
    """Return the id of a user of the live server."""
    app = server_app(server)
    with app.app_context():
        found = db.session.scalar(select(User.id).filter_by(username=name))
        db.engine.dispose()
    return found


def watch(server, http, session_id):
    """Open the watch socket in the worker that holds the session (the other one says it does not hold it)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        ws = connect_terminal(f"{server.ws_url}/sessions/{session_id}/watch/ws", http, server.url)
        try:
            first = ws.receive(timeout=WAIT_SECONDS)
        except ConnectionClosed:  # the other worker said so and closed, its message lost with the close
            continue
        if isinstance(first, str) and json.loads(first)["type"] == "size":
            return ws
        assert "not open in this server process" in first, first  # and that worker closes the socket itself
    raise AssertionError("no watch socket reached the worker that holds the session")


def end_standing(server, how, watcher, http):
    """End the watcher's standing: log out, be disabled or demoted by the first admin, or have the log-in ended by
    a process that is neither worker (no signal reaches them: only the database says so)."""
    if how == "logged_out":
        assert http.post(f"{server.url}/logout", data={"csrf_token": server.csrf(http)}, timeout=10).ok
    elif how in ("disabled", "demoted"):
        admin = server.login()
        path = "disable" if how == "disabled" else "role"
        assert admin.post(f"{server.url}/users/{user_id(server, watcher)}/{path}",
                          data={"csrf_token": server.csrf(admin)}, timeout=10).ok
    else:
        watcher_id, app = user_id(server, watcher), server_app(server)
        with app.test_request_context():
            row = db.session.scalars(select(LoginSession).where(LoginSession.user_id == watcher_id,
                                                                LoginSession.revoked_at.is_(None))).one()
            assert logins.revoke(row, "ended_by_admin", by="admin")
            db.engine.dispose()


def closing_message(ws, timeout):
    """Return the watch socket's closing message and the output that came before it."""
    seen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = ws.receive(timeout=0.1)
        if isinstance(frame, bytes):
            seen += frame
        elif frame is not None and json.loads(frame)["type"] == "closed":
            return json.loads(frame)["message"], seen
    raise AssertionError(f"no closing message within {timeout} s; output meanwhile: {seen[-300:]!r}")


def rest_of(ws, timeout=WAIT_SECONDS):
    """Return what a socket still sends until it is closed."""
    seen, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            frame = ws.receive(timeout=0.5)
            if frame is not None:
                seen.append(frame)
    except ConnectionClosed:
        return seen
    raise AssertionError(f"the watch socket stayed open; it sent {seen!r}")


@pytest.mark.parametrize("how", list(ENDS))
def test_a_watch_ends_with_its_watchers_standing(two_workers, sshd, how):
    server = two_workers
    terminal, session_id = open_user_session(server, sshd, "watched-")
    watcher = new_admin(server)
    http = server.login(watcher, PASSWORD)
    try:
        watching = watch(server, http, session_id)
        terminal.send(b"echo before-$((2*4))\n")
        read_until(watching, b"before-8")  # the watcher sees the terminal live

        end_standing(server, how, watcher, http)
        changed = time.monotonic()
        message, _ = closing_message(watching, timeout=3)
        # Each process looks at its watchers every second (and at once where the log-in ended); a busy machine
        # stretches that second a little, never to several.
        assert time.monotonic() - changed < 2.0
        assert message == ENDS[how][0]

        terminal.send(b"echo after-$((3*7))\n")
        read_until(terminal, b"after-21")  # the terminal itself goes on: only the watch ended
        assert not [f for f in rest_of(watching) if isinstance(f, bytes) and b"after-21" in f]
        ended = wait_for(lambda: [e for e in live_events(server, "session.watch_ended") if e.session_id == session_id])
        assert [(e.actor, e.details["by"], e.details["reason"]) for e in ended] == [(watcher, watcher, ENDS[how][1])]
        words = re.escape(WATCH_ENDS[ENDS[how][1]][1])
        assert re.fullmatch(rf"stopped watching the session of u-\w+ with .+ — {words}", ended[0].message)
        assert http.get(f"{server.url}/sessions/{session_id}/watch", timeout=10, allow_redirects=False).status_code \
            in (302, 403)  # and the watch page is refused from now on
    finally:
        terminal.close()
