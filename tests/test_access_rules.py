"""Every row of docs/access.md's two tables (the ways in, and the events that end them), walked: a row without a
check here, or a check without a row, fails. Ends that concern open terminals run through gunicorn and the real sshd."""
import json
import re
import secrets
import time

import pytest
import simple_websocket
from sqlalchemy import select, update

from app.auth.models import User
from app.extensions import db
from app.teams.models import Grant
from app.terminals.models import TerminalSession
from tests.support import (ROOT, WAIT_SECONDS, connect_terminal, console, live_events, new_user, open_terminal,
                           server_app, wait_for)
from tests.test_teams import (client_of, make_device, make_user, open_session, post, session_flags, setup_team,
                              team_id)

DOC = ROOT / "docs" / "access.md"
CHECKS = {}


def table_rows():
    """Return the row codes of the access tables in docs/access.md, in order."""
    return re.findall(r"^\| `([a-z-]+)` \|", DOC.read_text(), re.M)


def check(code):
    """Register the check of one table row."""
    def register(function):
        CHECKS[code] = function
        return function
    return register


def test_every_row_has_its_check_and_every_check_its_row():
    rows = table_rows()
    assert len(rows) == len(set(rows)) and len(rows) >= 18
    assert set(rows) == set(CHECKS)


@pytest.mark.parametrize("code", table_rows())
def test_row(code, request):
    CHECKS[code](request)


# --- helpers: the app through the test client -------------------------------------------------------------------

def ids(app, *names):
    """Return the ids of the users of these names."""
    with app.app_context():
        return [db.session.scalar(select(User.id).filter_by(username=name)) for name in names]


def end_row(app, session_id):
    """Mark a session row ended (as its holder does)."""
    with app.app_context():
        db.session.execute(update(TerminalSession).where(TerminalSession.id == session_id)
                           .values(ended_at=db.func.now(), end_reason="client_closed"))
        db.session.commit()


def shared(request, folder="core", shares_trail=False, fixture="app"):
    """A team ops with member alice and a grant on folder core naming bob, whose device web1 sits there:
    return (app, admin client, device id, alice's id, bob's id, grant id)."""
    app = request.getfixturevalue(fixture)
    admin = client_of(app)
    make_user(app, "bob")
    device = make_device(app, "bob", "web1", folder=folder)
    tid, alice = setup_team(app, admin, grant=("folder", folder), shares_trail=shares_trail)
    [bob] = ids(app, "bob")
    with app.app_context():
        grant_id = db.session.scalar(select(Grant.id).filter_by(team_id=tid))
    post(admin, f"/teams/grants/{grant_id}/owners", {f"grant{grant_id}-owners": [bob]})
    return app, admin, device, alice, bob, grant_id


def sees(client, name="web1"):
    """Say whether a client's device list shows a device of this name."""
    return f'data-device-name="{name}"' in client.get("/devices/").get_data(as_text=True)


def edit_form(**fields):
    """Return a device form for an edit."""
    return {"name": "web1", "host": "127.0.0.1", "port": "2222", "username": "ops", "auth_type": "password",
            "password": "", "folder": "core", **fields}


# --- ways in -----------------------------------------------------------------------------------------------------

@check("own-device")
def _own_device(request):
    app = request.getfixturevalue("app")
    make_user(app, "bob")
    make_user(app, "eve")
    device = make_device(app, "bob", "web1")
    bob, eve = client_of(app, "bob"), client_of(app, "eve")
    assert sees(bob) and bob.get(f"/devices/{device}/edit").status_code == 200
    assert not sees(eve) and eve.get(f"/devices/{device}/edit").status_code == 404
    assert "Device web1 (127.0.0.1:2222) deleted." in post(bob, f"/devices/{device}/delete").get_data(as_text=True)
    assert not sees(bob)


@check("grant-device")
def _grant_device(request):
    app, admin, device, _, _, _ = shared(request)
    make_user(app, "mallory")
    make_device(app, "mallory", "web1", folder="core")  # a namesake planted in the same folder
    alice = client_of(app, "alice")
    body = alice.get("/devices/").get_data(as_text=True)
    assert body.count('data-device-name="web1"') == 1 and "shared by bob" in body and "shared by mallory" not in body
    assert alice.get(f"/devices/{device}/edit").status_code == 403
    assert post(alice, f"/devices/{device}/delete").status_code == 403


@check("admin-edit")
def _admin_edit(request):
    app, admin, device, _, _, _ = shared(request)
    [admin_id] = ids(app, "admin")
    tid = team_id(app, "ops")
    assert admin.get(f"/devices/{device}/edit").status_code == 404  # an admin is a user like any other for use
    post(admin, f"/teams/{tid}/members", {f"team{tid}-user_id": admin_id})
    assert admin.get(f"/devices/{device}/edit").status_code == 200
    refused = post(admin, f"/devices/{device}/test", edit_form(host="127.0.0.1", port="2200"))
    assert refused.status_code == 422 and "type the password again" in refused.get_data(as_text=True)


@check("own-session")
def _own_session(request):
    app, _, device, alice, _, _ = shared(request)
    session_id = open_session(app, alice, device)
    alice_client = client_of(app, "alice")
    assert alice_client.get(f"/sessions/{session_id}").status_code == 200  # open: its own user reads it
    end_row(app, session_id)
    assert alice_client.get(f"/sessions/{session_id}").status_code == 200


@check("trail-sharing")
def _trail_sharing(request):
    app, admin, device, _, bob, _ = shared(request, shares_trail=True)
    session_id = open_session(app, bob, device)
    alice = client_of(app, "alice")
    assert session_id in alice.get("/terminals/connected").get_data(as_text=True)  # listed while open
    assert alice.get(f"/sessions/{session_id}").status_code == 403  # read only once it ended
    assert alice.get(f"/sessions/{session_id}/recording.cast").status_code == 403
    end_row(app, session_id)
    assert alice.get(f"/sessions/{session_id}").status_code == 200
    outsider = (make_user(app, "eve"), client_of(app, "eve"))[1]
    assert outsider.get(f"/sessions/{session_id}").status_code == 404


@check("admin-session")
def _admin_session(request):
    app, admin, device, _, bob, _ = shared(request)
    session_id = open_session(app, bob, device)
    assert session_id in admin.get("/terminals/connected").get_data(as_text=True)
    page = admin.get(f"/sessions/{session_id}")
    assert page.status_code == 403 and f"/sessions/{session_id}/watch" in page.get_data(as_text=True)
    assert admin.get(f"/sessions/{session_id}/recording.cast").status_code == 403
    end_row(app, session_id)
    assert admin.get(f"/sessions/{session_id}").status_code == 200


@check("owner-trail")
def _owner_trail(request):
    app, admin, device, _, _, _ = shared(request, fixture="pg_app")  # the rule reads JSON: PostgreSQL's way
    [admin_id] = ids(app, "admin")
    tid = team_id(app, "ops")
    post(admin, f"/teams/{tid}/members", {f"team{tid}-user_id": admin_id})
    post(admin, f"/devices/{device}/test", edit_form(port="2200"))
    trail = client_of(app, "bob").get("/audit/rows").get_data(as_text=True)
    assert "tested connection to web1 (127.0.0.1:2222) at 127.0.0.1:2200" in trail
    assert "tested connection to web1" not in client_of(app, "alice").get("/audit/rows").get_data(as_text=True)


# --- ends through the test client: the open terminals they flag ---------------------------------------------------

def flagged_by(request, change):
    """Open a member's and the owner's terminal on the shared device, make change(app, admin, ids), and return
    (member's flags, owner's flags)."""
    app, admin, device, alice, bob, grant_id = shared(request)
    members, owners = open_session(app, alice, device), open_session(app, bob, device)
    change(app, admin, {"device": device, "alice": alice, "bob": bob, "grant": grant_id, "team": team_id(app, "ops")})
    return session_flags(app, members), session_flags(app, owners)


REVOKED = ((True, "access_revoked"), (False, None))


@check("revoke")
def _revoke(request):
    assert flagged_by(request, lambda app, admin, i: post(admin, f"/teams/grants/{i['grant']}/delete")) == REVOKED


@check("owners")
def _owners(request):
    change = lambda app, admin, i: post(admin, f"/teams/grants/{i['grant']}/owners", {})  # noqa: E731
    assert flagged_by(request, change) == REVOKED


@check("remove-member")
def _remove_member(request):
    change = lambda app, admin, i: post(admin, f"/teams/{i['team']}/members/{i['alice']}/delete")  # noqa: E731
    assert flagged_by(request, change) == REVOKED


@check("delete-team")
def _delete_team(request):
    assert flagged_by(request, lambda app, admin, i: post(admin, f"/teams/{i['team']}/delete")) == REVOKED


@check("move")
def _move(request):
    def change(app, admin, i):  # the owner moves it through their edit form, the stored password kept
        bob = client_of(app, "bob")
        assert "Device web1 saved." in post(bob, f"/devices/{i['device']}", edit_form(folder="elsewhere")).get_data(
            as_text=True)
    assert flagged_by(request, change) == REVOKED


# --- ends through gunicorn and the real sshd -----------------------------------------------------------------------

def new_admin(server, password="admin-password-long"):
    """Create an admin through the console on a live server; return its name and password."""
    name = "a-" + secrets.token_hex(4)
    console(server, "users", "create", name, "--admin", "--password", password, "--no-must-change")
    return name, password


def live_post(server, http, path, data=None):
    """POST to a live server as htmx does (the CSRF token in the header); return the response."""
    return http.post(server.url + path, data=data or {}, headers={"X-CSRFToken": server.csrf(http)}, timeout=30)


def _user_id(server, name):
    """Return the id of a user, from the live server's database."""
    app = server_app(server)
    with app.app_context():
        found = db.session.scalar(select(User.id).filter_by(username=name))
        db.engine.dispose()
    return found


def live_shared(server, sshd):
    """On the live server: owner and member users, the owner's device in a folder of its own, a team holding the
    member and a grant naming the owner. Return (owner http, member http, device id, owner name, folder)."""
    tag = secrets.token_hex(3)
    owner, owner_pw = new_user(server)
    member, member_pw = new_user(server)
    owner_http, member_http, admin = server.login(owner, owner_pw), server.login(member, member_pw), server.login()
    device = server.add_device(owner_http, sshd, f"web-{tag}", folder=f"core-{tag}")
    live_post(server, admin, "/teams/", {"name": f"ops-{tag}"})
    page = admin.get(server.url + "/teams/", timeout=10).text
    tid = re.search(rf'id="team-(\d+)-name">ops-{tag}<', page).group(1)
    live_post(server, admin, f"/teams/{tid}/members", {f"team{tid}-user_id": _user_id(server, member)})
    live_post(server, admin, f"/teams/{tid}/grants", {f"team{tid}-grant-kind": "folder",
                                                      f"team{tid}-grant-value": f"core-{tag}",
                                                      f"team{tid}-grant-owners": _user_id(server, owner)})
    return owner_http, member_http, device, owner, f"core-{tag}"


def closing(ws, timeout=WAIT_SECONDS):
    """Read until the server closes the terminal; return its last control message (the closed one)."""
    controls = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame = ws.receive(timeout=0.2)
        except simple_websocket.ConnectionClosed:
            return controls[-1] if controls else None
        if isinstance(frame, str):
            controls.append(json.loads(frame))
    raise AssertionError(f"the server did not close the terminal within {timeout} s: {controls}")


def ended_reason(server, session_id):
    """Return the reason of a live server's session.ended event for this session (waits for it)."""
    return wait_for(lambda: [e.details["reason"] for e in live_events(server, "session.ended")
                             if e.session_id == session_id])[0]


def terminal(server, http, device):
    """Open a terminal as http's user to a device of the live server; return (websocket, session id)."""
    before = {e.session_id for e in live_events(server, "session.started")}
    ws = open_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
    [session_id] = [e.session_id for e in live_events(server, "session.started") if e.session_id not in before]
    return ws, session_id


def refused_terminal(server, http, device):
    """Say whether opening a terminal to device is refused before any shell answers."""
    try:
        ws = connect_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
    except Exception:  # the upgrade itself is refused (404)
        return True
    try:
        message = closing(ws)
    finally:
        close_quietly(ws)
    return message is None or message.get("type") == "error"


def admin_action(server, path):
    """POST an admin action of the users page (a plain form with its CSRF token) on the live server."""
    admin = server.login()
    token = re.search(r'name="csrf-token" content="([^"]+)"', admin.get(server.url + "/users/", timeout=10).text)
    response = admin.post(server.url + path, data={"csrf_token": token.group(1)}, allow_redirects=False, timeout=30)
    assert response.status_code in (200, 302), response.text[:500]


@check("delete-device")
def _delete_device(request):
    server, sshd = request.getfixturevalue("live_server"), request.getfixturevalue("sshd")
    owner_http, member_http, device, _, _ = live_shared(server, sshd)
    members, members_id = terminal(server, member_http, device)
    owners, owners_id = terminal(server, owner_http, device)
    response = live_post(server, owner_http, f"/devices/{device}/delete")
    assert "2 open terminals ended." in response.text
    for ws in (members, owners):
        message = closing(ws)
        assert message["reason"] == "device_deleted" and message["message"] == \
            "This device was deleted; the session has ended."
    assert ended_reason(server, members_id) == ended_reason(server, owners_id) == "device_deleted"


@check("delete-user")
def _delete_user(request):
    server, sshd = request.getfixturevalue("live_server"), request.getfixturevalue("sshd")
    _, member_http, device, owner, _ = live_shared(server, sshd)
    ws, session_id = terminal(server, member_http, device)
    admin_action(server, f"/users/{_user_id(server, owner)}/delete")
    assert closing(ws)["reason"] == "device_deleted"
    assert ended_reason(server, session_id) == "device_deleted"
    [event] = [e for e in live_events(server, "user.deleted") if e.details["username"] == owner]
    assert event.details["sessions_ended"] == 1


@check("disable")
def _disable(request):
    server, sshd = request.getfixturevalue("live_server"), request.getfixturevalue("sshd")
    owner_http, member_http, device, owner, _ = live_shared(server, sshd)
    members, members_id = terminal(server, member_http, device)
    owners, owners_id = terminal(server, owner_http, device)
    admin_action(server, f"/users/{_user_id(server, owner)}/disable")
    message = closing(members)
    assert message["reason"] == "owner_disabled" and "owner of this device was disabled" in message["message"]
    assert closing(owners)["reason"] == "user_disabled"
    assert ended_reason(server, members_id) == "owner_disabled" and ended_reason(server, owners_id) == "user_disabled"
    assert refused_terminal(server, member_http, device)  # nobody may use a disabled owner's devices
    assert f'/terminals/{device}/ws' not in member_http.get(server.url + "/devices/", timeout=10).text
    admin_action(server, f"/users/{_user_id(server, owner)}/disable")  # enabled again: usable again
    ws, _ = terminal(server, member_http, device)
    close_quietly(ws)
    ws, watch, _, admin_name = watching(server, sshd)  # a disabled watcher stops watching
    try:
        admin_action(server, f"/users/{_user_id(server, admin_name)}/disable")
        assert watch_ends(watch), "a watch outlived its watcher's account"
    finally:
        close_quietly(watch)
        close_quietly(ws)


def watching(server, sshd):
    """A user's open terminal and a second admin watching it: return (user ws, watch ws, admin http, admin name)."""
    name, password = new_user(server)
    http = server.login(name, password)
    device = server.add_device(http, sshd, f"watched-{secrets.token_hex(3)}")
    ws, session_id = terminal(server, http, device)
    admin_name, admin_password = new_admin(server)
    admin = server.login(admin_name, admin_password)
    watch = connect_terminal(f"{server.ws_url}/sessions/{session_id}/watch/ws", admin, server.url)
    wait_for(lambda: [e for e in live_events(server, "session.watch_started") if e.session_id == session_id])
    return ws, watch, admin, admin_name


def watch_ends(watch, timeout=WAIT_SECONDS):
    """Say whether the watch socket is closed (or told it closed) within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame = watch.receive(timeout=0.2)
        except simple_websocket.ConnectionClosed:
            return True
        if isinstance(frame, str) and json.loads(frame).get("type") == "closed":
            return True
    return False


def close_quietly(ws):
    """Close a websocket the server may have closed already (a watch that ended does; on a loaded machine a missed
    ping may end a terminal first)."""
    try:
        ws.close()
    except simple_websocket.ConnectionClosed:
        pass


@check("watch")
def _watch(request):
    server, sshd = request.getfixturevalue("live_server"), request.getfixturevalue("sshd")
    ws, watch, admin, _ = watching(server, sshd)
    try:
        ws.send(b"echo seen-$((7*6))\n")
        seen = b""
        deadline = time.monotonic() + 10
        while b"seen-42" not in seen and time.monotonic() < deadline:
            frame = watch.receive(timeout=0.5)
            seen += frame if isinstance(frame, bytes) else b""
        assert b"seen-42" in seen
        close_quietly(ws)  # the session ends: so does the watch
        assert watch_ends(watch)
    finally:
        close_quietly(watch)


@check("logout")
def _logout(request):
    server, sshd = request.getfixturevalue("live_server"), request.getfixturevalue("sshd")
    ws, watch, admin, _ = watching(server, sshd)
    try:
        live_post(server, admin, "/logout")
        assert watch_ends(watch), "a watch outlived its watcher's log-out"
    finally:
        close_quietly(watch)
        close_quietly(ws)
    name, password = new_user(server)
    http = server.login(name, password)
    device = server.add_device(http, sshd, f"own-{secrets.token_hex(3)}")
    mine, _ = terminal(server, http, device)
    live_post(server, http, "/logout")
    assert closing(mine)["reason"] == "logged_out"


@check("demotion")
def _demotion(request):
    server, sshd = request.getfixturevalue("live_server"), request.getfixturevalue("sshd")
    ws, watch, _, admin_name = watching(server, sshd)
    try:
        admin_action(server, f"/users/{_user_id(server, admin_name)}/role")
        assert watch_ends(watch), "a watch outlived its watcher's admin role"
    finally:
        close_quietly(watch)
        close_quietly(ws)
    # Members' terminals to a demoted admin's devices that no grant names end (tests/test_teams_owners.py too).
    app = request.getfixturevalue("app")
    admin = client_of(app)
    make_user(app, "dora")
    with app.app_context():
        db.session.scalar(select(User).filter_by(username="dora")).is_admin = True
        db.session.commit()
    device = make_device(app, "dora", "web1", folder="core")
    _, alice = setup_team(app, admin)
    session_id = open_session(app, alice, device)
    [dora] = ids(app, "dora")
    token = re.search(r'name="csrf-token" content="([^"]+)"', admin.get("/users/").get_data(as_text=True)).group(1)
    admin.post(f"/users/{dora}/role", data={"csrf_token": token})
    assert session_flags(app, session_id) == (True, "access_revoked")
