"""Teams and shared device access: the admin page, what members may do, the trail's rule, revocation."""
import re
import uuid

import pytest
from sqlalchemy import select

from app import crypto
from app.audit.events import record
from app.audit.models import AuditEvent
from app.audit.query import visible_events
from app.auth.accounts import create_user
from app.auth.models import User
from app.devices.models import Device
from app.extensions import db
from app.teams.models import Grant, Team, TeamMember
from app.terminals.models import TerminalSession
from tests.support import AuthActions

SECRET = "shared-device-Pa55word!"
PASSWORD = "user-password-long"


def client_of(app, username=None):
    """Return a test client logged in as username (default: the first admin)."""
    client = app.test_client()
    response = AuthActions(client).login(username, PASSWORD) if username else AuthActions(client).login()
    assert response.status_code == 302
    return client


def post(client, path, data=None):
    """POST as htmx does: the CSRF token in the header; the body is checked for the device secret."""
    token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    response = client.post(path, data=data or {}, headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert SECRET.encode() not in response.get_data()
    return response


def make_user(app, name):
    """Create a user; return its id."""
    with app.app_context():
        return create_user(name, PASSWORD, via="console").id


def make_device(app, owner, name, folder=None, tags=()):
    """Create a device with a stored password for owner (a username); return its id."""
    with app.app_context():
        owner_id = db.session.scalar(select(User.id).filter_by(username=owner))
        device = Device(owner_id=owner_id, name=name, host="127.0.0.1", port=2222, username="ops",
                        auth_type="password", password_enc=crypto.encrypt(SECRET, "password"), folder=folder)
        device.tags = list(tags)
        db.session.add(device)
        db.session.commit()
        return device.id


def team_id(app, name):
    """Return the id of the team of this name."""
    with app.app_context():
        return db.session.scalar(select(Team.id).filter_by(name=name))


def events(app, action):
    """Return the events of one action, oldest first."""
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).filter_by(action=action).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return rows


def open_session(app, user_id, device_id):
    """Insert an open terminal_sessions row as a live terminal holds it; return its id."""
    with app.app_context():
        row = TerminalSession(id=str(uuid.uuid4()), user_id=user_id, device_id=device_id, actor=f"user{user_id}",
                              target="shared", worker="test:1")
        db.session.add(row)
        db.session.commit()
        return row.id


def session_flags(app, session_id):
    """Return (terminate_requested, terminate_reason) of a terminal session."""
    with app.app_context():
        row = db.session.get(TerminalSession, session_id)
        return row.terminate_requested, row.terminate_reason


def setup_team(app, admin, team="ops", member="alice", grant=("folder", "core"), shares_trail=False):
    """Create a team with one member and one grant through the page; return (team id, member id)."""
    member_id = make_user(app, member)
    assert post(admin, "/teams/", {"name": team}).status_code == 200
    tid = team_id(app, team)
    assert post(admin, f"/teams/{tid}/members", {f"team{tid}-user_id": member_id}).status_code == 200
    data = {f"team{tid}-grant-kind": grant[0], f"team{tid}-grant-value": grant[1]}
    if shares_trail:
        data[f"team{tid}-grant-shares_trail"] = "y"
    assert post(admin, f"/teams/{tid}/grants", data).status_code == 200
    return tid, member_id


@pytest.fixture
def client(any_app):
    """The client of this module's tests (and so of the `admin` fixture): on SQLite, then on PostgreSQL."""
    return any_app.test_client()


def test_only_admins_reach_the_teams_page(any_app):
    make_user(any_app, "bob")
    bob = client_of(any_app, "bob")
    assert bob.get("/teams/").status_code == 403
    assert post(bob, "/teams/", {"name": "mine"}).status_code == 403
    assert team_id(any_app, "mine") is None
    assert "teams-icon" not in bob.get("/").get_data(as_text=True)


def test_create_a_team(any_app, admin):
    page = admin.get("/teams/")
    assert page.status_code == 200 and b"No teams yet" in page.data
    response = post(admin, "/teams/", {"name": "  ops  "})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="teams-panel"' in body and "<html" not in body
    assert "Team ops created." in body and '<h2 id="team-' in body
    [event] = events(any_app, "team.created")
    assert event.message == "created team ops" and event.details == {"team": "ops"} and event.actor == "admin"


@pytest.mark.parametrize("name, error", [
    ("", "Give the team a name."),
    ("   ", "Give the team a name."),
    ("x" * 65, "A team name has at most 64 characters."),
    ("bell\x07", "The team name may contain only printable characters."),
    ("tab\tname", "The team name may contain only printable characters."),
    ("OPS", "There is already a team named ops."),
])
def test_team_names_are_checked(any_app, admin, name, error):
    post(admin, "/teams/", {"name": "ops"})
    response = post(admin, "/teams/", {"name": name})
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and error in body
    assert 'data-focus="name"' in body
    if name.strip() and name.isprintable():
        assert f'value="{name}"' in body  # the form keeps what was typed
    assert len(events(any_app, "team.created")) == 1


def test_members_are_added_and_removed(any_app, admin):
    alice, bob = make_user(any_app, "alice"), make_user(any_app, "bob")
    post(admin, "/teams/", {"name": "ops"})
    tid = team_id(any_app, "ops")
    body = admin.get("/teams/").get_data(as_text=True)
    assert re.search(r'<select id="team\d+-user_id"[^>]*>.*alice.*bob', body)
    response = post(admin, f"/teams/{tid}/members", {f"team{tid}-user_id": alice})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "alice added to team ops." in body
    assert f'<option value="{alice}"' not in body and f'<option value="{bob}"' in body  # only users not in it
    for bad, error in ((alice, "Choose a user who is not in this team yet."),
                       (99999, "Choose a user who is not in this team yet."), ("x", "Choose a user from the list.")):
        refused = post(admin, f"/teams/{tid}/members", {f"team{tid}-user_id": bad})
        assert refused.status_code == 422 and error in refused.get_data(as_text=True)
    [added] = events(any_app, "team.member_added")
    assert added.message == "added alice to team ops" and added.details == {"team": "ops", "user": "alice"}

    response = post(admin, f"/teams/{tid}/members/{alice}/delete")
    assert response.status_code == 200 and "alice removed from team ops." in response.get_data(as_text=True)
    [removed] = events(any_app, "team.member_removed")
    assert removed.message == "removed alice from team ops"
    assert removed.details == {"team": "ops", "user": "alice", "sessions_ended": 0}
    assert post(admin, f"/teams/{tid}/members/{alice}/delete").status_code == 404
    assert post(admin, "/teams/999/members", {"team999-user_id": bob}).status_code == 404


def test_grants_show_their_devices_and_are_audited(any_app, admin):
    make_device(any_app, "admin", "db1", folder="core", tags=["db"])
    make_device(any_app, "admin", "db2", folder="core", tags=["db", "eu"])
    make_device(any_app, "admin", "web", folder="edge")
    post(admin, "/teams/", {"name": "ops"})
    tid = team_id(any_app, "ops")
    page = admin.get("/teams/").get_data(as_text=True)
    assert re.search(r'<datalist id="folder-names"><option value="core"></option><option value="edge">', page)
    assert re.search(r'<datalist id="tag-names"><option value="db"></option><option value="eu">', page)

    response = post(admin, f"/teams/{tid}/grants", {f"team{tid}-grant-kind": "folder", f"team{tid}-grant-value": "core",
                                                    f"team{tid}-grant-shares_trail": "y"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "Team ops may now use the devices in folder core." in body
    assert re.search(r"<strong>core</strong></span>\s*<span class=\"hint count\">2 devices</span>\s*"
                     r"<span class=\"badge\"", body)
    post(admin, f"/teams/{tid}/grants", {f"team{tid}-grant-kind": "tag", f"team{tid}-grant-value": " EU "})
    body = admin.get("/teams/").get_data(as_text=True)
    assert re.search(r"<strong>eu</strong></span>\s*<span class=\"hint count\">1 device</span>\s*<button", body)
    granted = events(any_app, "access.granted")
    assert [e.message for e in granted] == ["granted team ops the devices in folder core",
                                            "granted team ops the devices tagged eu"]
    assert granted[0].details == {"team": "ops", "kind": "folder", "value": "core", "shares_trail": True, "owners": [],
                                  "devices": 2}  # the admin's devices: admins' devices always count
    assert granted[0].severity == "warning"

    with any_app.app_context():
        core = db.session.scalar(select(Grant.id).filter_by(value="core"))
    response = post(admin, f"/teams/grants/{core}/delete")
    assert response.status_code == 200 and "Team ops no longer has the devices in folder core." in response.get_data(
        as_text=True)
    [revoked] = events(any_app, "access.revoked")
    assert revoked.message == "revoked team ops's access to the devices in folder core"
    assert revoked.details == {"team": "ops", "kind": "folder", "value": "core", "shares_trail": True, "devices": 2,
                               "sessions_ended": 0}
    assert post(admin, f"/teams/grants/{core}/delete").status_code == 404


@pytest.mark.parametrize("kind, value, error", [
    ("folder", "", "Enter a folder or tag name."),
    ("folder", "x" * 65, "A folder name has at most 64 characters."),
    ("tag", "x" * 33, "A tag name has at most 32 characters."),
    ("tag", "new\nline", "The folder or tag name may contain only printable characters."),
    ("tag", "two words", "A tag starts with a letter or digit, then letters, digits or . _ : / -"),
    ("tag", "-db", "A tag starts with a letter or digit, then letters, digits or . _ : / -"),
    ("owner", "core", "Choose a folder or a tag."),
    ("folder", "core", "Team ops already has the devices in folder core."),
])
def test_grants_are_checked(any_app, admin, kind, value, error):
    post(admin, "/teams/", {"name": "ops"})
    tid = team_id(any_app, "ops")
    post(admin, f"/teams/{tid}/grants", {f"team{tid}-grant-kind": "folder", f"team{tid}-grant-value": "core"})
    response = post(admin, f"/teams/{tid}/grants", {f"team{tid}-grant-kind": kind, f"team{tid}-grant-value": value,
                                                    f"team{tid}-grant-shares_trail": "y"})
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and error in body
    assert "data-focus=\"team" in body
    if value.isprintable():  # the form keeps what was typed and ticked
        assert f'name="team{tid}-grant-value" required type="text" value="{value}"' in body
    assert f'<input checked id="team{tid}-grant-shares_trail"' in body
    with any_app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(Grant)) == 1
    assert len(events(any_app, "access.granted")) == 1


def test_a_member_uses_shared_devices_but_never_edits_them(any_app, admin):
    shared = make_device(any_app, "admin", "core-1", folder="core")
    tagged = make_device(any_app, "admin", "tagged-1", tags=["db"])
    hidden = make_device(any_app, "admin", "private-1", folder="home")
    tid, _ = setup_team(any_app, admin)
    post(admin, f"/teams/{tid}/grants", {f"team{tid}-grant-kind": "tag", f"team{tid}-grant-value": "db"})
    alice = client_of(any_app, "alice")
    panel = alice.get("/devices/")
    body = panel.get_data(as_text=True)
    assert panel.status_code == 200 and SECRET not in body
    assert 'data-device-name="core-1"' in body and 'data-device-name="tagged-1"' in body
    assert 'data-device-name="private-1"' not in body
    for device_id in (shared, tagged):
        assert alice.get(f"/devices/{device_id}/edit").status_code == 403
        assert post(alice, f"/devices/{device_id}", {"name": "taken", "host": "127.0.0.1", "port": "22",
                                                     "username": "x", "auth_type": "password"}).status_code == 403
        assert post(alice, f"/devices/{device_id}/test", {"host": "127.0.0.1", "port": "22", "username": "x",
                                                          "auth_type": "password"}).status_code == 403
        assert post(alice, f"/devices/{device_id}/delete").status_code == 403
    assert alice.get(f"/devices/{hidden}/edit").status_code == 404
    assert post(alice, f"/devices/{hidden}/delete").status_code == 404
    with any_app.app_context():
        assert [d.name for d in db.session.scalars(select(Device).order_by(Device.name))] == \
            ["core-1", "private-1", "tagged-1"]
    # The owner (and admin) still edits it; nobody's page shows the secret.
    assert admin.get(f"/devices/{shared}/edit").status_code == 200
    for client, path in ((alice, "/"), (admin, "/"), (admin, "/teams/"), (alice, "/audit/rows")):
        assert SECRET.encode() not in client.get(path).data


def trail_of(app, username):
    """Return the ids of the events username may read."""
    with app.test_request_context():
        user = db.session.scalar(select(User).filter_by(username=username))
        return set(db.session.scalars(visible_events(user).with_only_columns(AuditEvent.id)))


@pytest.mark.parametrize("shares_trail", [False, True])
def test_the_trail_of_shared_devices_only_where_the_grant_says(any_app, admin, shares_trail):
    device = make_device(any_app, "admin", "core-1", folder="core")
    other = make_device(any_app, "admin", "elsewhere", folder="home")
    setup_team(any_app, admin, shares_trail=shares_trail)
    with any_app.app_context():
        admin_id = db.session.scalar(select(User.id).filter_by(username="admin"))
    on_shared = open_session(any_app, admin_id, device)
    on_other = open_session(any_app, admin_id, other)
    with any_app.test_request_context():
        for session_id in (on_shared, on_other):
            record("session.started", "started session", actor="admin", user_id=admin_id, session_id=session_id)
    [shared_event, other_event] = events(any_app, "session.started")
    seen = trail_of(any_app, "alice")
    assert (shared_event.id in seen) is shares_trail
    assert other_event.id not in seen
    assert not any(e.user_id == admin_id and e.session_id is None for e in events(any_app, "team.created")
                   if e.id in seen)  # never the admin's other events
    alice = client_of(any_app, "alice")
    rows = alice.get("/audit/rows").get_data(as_text=True)
    assert (on_shared in rows) is shares_trail and on_other not in rows
    connected = alice.get("/terminals/connected").get_data(as_text=True)  # the open sessions follow the same rule
    assert (on_shared in connected) is shares_trail and on_other not in connected
    # Both sessions are open: one on a shared device is listed, but read only once it ended (else it is watching).
    page = alice.get(f"/sessions/{on_shared}")
    assert page.status_code == (403 if shares_trail else 404)
    assert ("This session is still open" in page.get_data(as_text=True)) is shares_trail
    assert alice.get(f"/sessions/{on_other}").status_code == 404
    with any_app.app_context():  # ended, the shared one is read
        for session_id in (on_shared, on_other):
            db.session.get(TerminalSession, session_id).ended_at = db.func.now()
        db.session.commit()
    assert alice.get(f"/sessions/{on_shared}").status_code == (200 if shares_trail else 404)
    assert alice.get(f"/sessions/{on_other}").status_code == 404


@pytest.mark.parametrize("change", ["revoke", "remove member", "delete team"])
def test_losing_access_ends_the_members_terminals_only(any_app, admin, change):
    device = make_device(any_app, "admin", "core-1", folder="core")
    tid, alice = setup_team(any_app, admin)
    with any_app.app_context():
        admin_id = db.session.scalar(select(User.id).filter_by(username="admin"))
        grant_id = db.session.scalar(select(Grant.id).filter_by(team_id=tid))
    members = open_session(any_app, alice, device)
    owners = open_session(any_app, admin_id, device)
    path, action = {"revoke": (f"/teams/grants/{grant_id}/delete", "access.revoked"),
                    "remove member": (f"/teams/{tid}/members/{alice}/delete", "team.member_removed"),
                    "delete team": (f"/teams/{tid}/delete", "team.deleted")}[change]
    response = post(admin, path)
    assert response.status_code == 200 and "1 open terminal ended." in response.get_data(as_text=True)
    assert session_flags(any_app, members) == (True, "access_revoked")
    assert session_flags(any_app, owners) == (False, None)
    [event] = events(any_app, action)
    assert event.details["sessions_ended"] == 1


def test_deleting_a_team_is_audited_with_what_it_held(any_app, admin):
    tid, _ = setup_team(any_app, admin)
    response = post(admin, f"/teams/{tid}/delete")
    assert response.status_code == 200 and "Team ops deleted." in response.get_data(as_text=True)
    [event] = events(any_app, "team.deleted")
    assert event.message == "deleted team ops"
    assert event.details == {"team": "ops", "members": 1, "grants": ["folder core"], "sessions_ended": 0}
    with any_app.app_context():
        assert db.session.scalar(select(db.func.count()).select_from(TeamMember)) == 0
        assert db.session.scalar(select(db.func.count()).select_from(Grant)) == 0
    assert post(admin, f"/teams/{tid}/delete").status_code == 404


def test_a_member_keeps_access_through_another_grant(any_app, admin):
    device = make_device(any_app, "admin", "core-1", folder="core", tags=["db"])
    tid, alice = setup_team(any_app, admin)
    post(admin, f"/teams/{tid}/grants", {f"team{tid}-grant-kind": "tag", f"team{tid}-grant-value": "db"})
    session_id = open_session(any_app, alice, device)
    with any_app.app_context():
        folder_grant = db.session.scalar(select(Grant.id).filter_by(team_id=tid, kind="folder"))
    body = post(admin, f"/teams/grants/{folder_grant}/delete").get_data(as_text=True)
    assert "no longer has the devices in folder core." in body and "open terminal ended" not in body
    assert session_flags(any_app, session_id) == (False, None)
    assert 'data-device-name="core-1"' in client_of(any_app, "alice").get("/devices/").get_data(as_text=True)
