"""Grants cover the devices of owners an admin chose: a folder or tag name set by anyone else plants nothing."""
import re

import flask_migrate
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from app import create_app
from app.auth.models import User
from app.devices.models import Device
from app.extensions import db
from app.teams.models import Grant, GrantOwner
from tests.support import SECRET_KEY, reset_postgres
from tests.test_teams import (client_of, events, make_device, make_user, open_session, post, session_flags,
                              team_id)


def user_id(app, name):
    """Return the id of the user of this name."""
    with app.app_context():
        return db.session.scalar(select(User.id).filter_by(username=name))


def team_with_member(app, admin, member="alice"):
    """Create team ops with one member through the page; return the team id."""
    member_id = make_user(app, member)
    post(admin, "/teams/", {"name": "ops"})
    tid = team_id(app, "ops")
    post(admin, f"/teams/{tid}/members", {f"team{tid}-user_id": member_id})
    return tid


def grant(admin, tid, kind, value, owners=()):
    """Grant team tid a folder or tag, covering the devices of owners (user ids); return the response."""
    return post(admin, f"/teams/{tid}/grants", {f"team{tid}-grant-kind": kind, f"team{tid}-grant-value": value,
                                                f"team{tid}-grant-owners": list(owners)})


def listed(client):
    """Return [(name, owner words)] of the device list a client sees: "shared by X · user@host:port"."""
    body = client.get("/devices/").get_data(as_text=True)
    rows = re.findall(r'<li class="device[^"]*" id="device-\d+".*?</li>', body, re.S)
    found = []
    for row in rows:
        name = re.search(r'data-device-name="([^"]+)"', row).group(1)
        owner = re.search(r'<span class="owner">(.*?)</span>', row)
        address = re.sub(r"<[^>]+>", "", re.search(r'<span class="addr[^"]*">(.*?)</span>\s*</button>', row, re.S).group(1))
        found.append((name, " · ".join(([owner.group(1)] if owner else []) + [address.strip()])))
    return found


@pytest.fixture
def client(any_app):
    """The client of this module's tests (and so of the `admin` fixture): on SQLite, then on PostgreSQL."""
    return any_app.test_client()


@pytest.mark.parametrize("kind, value, planted", [("folder", "core", {"folder": "core"}),
                                                  ("tag", "db", {"tags": ["db"]})])
def test_a_device_planted_under_a_grant_name_is_not_shared(any_app, admin, kind, value, planted):
    make_user(any_app, "bob")
    make_user(any_app, "mallory")
    real = make_device(any_app, "bob", "web1", folder=planted.get("folder"), tags=planted.get("tags", ()))
    tid = team_with_member(any_app, admin)
    assert grant(admin, tid, kind, value, owners=[user_id(any_app, "bob")]).status_code == 200
    alice = client_of(any_app, "alice")
    assert [name for name, _ in listed(alice)] == ["web1"]

    # Mallory, outside the team, labels her own web1 alike, through the real device form.
    mallory = client_of(any_app, "mallory")
    form = {"name": "web1", "host": "127.0.0.1", "port": "2200", "username": "ops", "auth_type": "password",
            "password": "mallory-pass-1", **planted}
    assert "Device web1 added." in post(mallory, "/devices/", form).get_data(as_text=True)
    with any_app.app_context():
        plant = db.session.scalar(select(Device.id).where(Device.owner_id == user_id(any_app, "mallory")))
    assert listed(alice) == [("web1", "shared by bob · ops@127.0.0.1:2222")]  # only bob's
    assert post(alice, f"/devices/{plant}/favourite").status_code == 404  # not hers to reach at all
    assert post(alice, f"/devices/{real}/favourite").status_code == 200
    body = admin.get("/teams/").get_data(as_text=True)
    assert re.search(r"<strong>" + value + r"</strong></span>\s*<span class=\"hint count\">1 device</span>", body)


def test_owners_are_suggested_from_the_devices_there(any_app, admin):
    make_user(any_app, "bob")
    make_user(any_app, "carol")
    for name in ("a", "b"):
        make_device(any_app, "bob", f"bob-{name}", folder="core")
    make_device(any_app, "carol", "carol-a", folder="edge", tags=["db"])
    tid = team_with_member(any_app, admin)
    page = admin.get(f"/teams/{tid}/grant-owners", query_string={f"team{tid}-grant-kind": "folder",
                                                                   f"team{tid}-grant-value": " core "})
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and f'id="team{tid}-grant-owners"' in body and "<html" not in body
    ticks = dict(re.findall(r'value="(\d+)" id="[^"]+"( checked)?>', body))
    assert ticks[str(user_id(any_app, "bob"))] == " checked" and ticks[str(user_id(any_app, "carol"))] == ""
    assert re.search(r"bob</span>\s*<span class=\"hint\">2 devices there", body)
    query = {f"team{tid}-grant-kind": "tag", f"team{tid}-grant-value": "DB"}
    body = admin.get(f"/teams/{tid}/grant-owners", query_string=query).get_data(as_text=True)
    ticks = dict(re.findall(r'value="(\d+)" id="[^"]+"( checked)?>', body))
    assert ticks[str(user_id(any_app, "carol"))] == " checked" and ticks[str(user_id(any_app, "bob"))] == ""
    assert client_of(any_app, "alice").get(f"/teams/{tid}/grant-owners").status_code == 403


def test_changing_the_owners_is_audited_and_ends_what_it_no_longer_covers(any_app, admin):
    make_user(any_app, "bob")
    bob_id = user_id(any_app, "bob")
    device = make_device(any_app, "bob", "web1", folder="core")
    tid = team_with_member(any_app, admin)
    grant(admin, tid, "folder", "core")
    [granted] = events(any_app, "access.granted")
    assert granted.details["owners"] == [] and granted.details["devices"] == 0
    alice = client_of(any_app, "alice")
    assert listed(alice) == []
    with any_app.app_context():
        grant_id = db.session.scalar(select(Grant.id))
    response = post(admin, f"/teams/grants/{grant_id}/owners", {f"grant{grant_id}-owners": [bob_id]})
    assert response.status_code == 200
    assert "Team ops now uses the devices in folder core of bob and admins." in response.get_data(as_text=True)
    assert [name for name, _ in listed(alice)] == ["web1"]
    session_id = open_session(any_app, user_id(any_app, "alice"), device)

    response = post(admin, f"/teams/grants/{grant_id}/owners", {})
    body = response.get_data(as_text=True)
    assert "of admins only. 1 open terminal ended." in body and "Owners: admins only" in body
    assert session_flags(any_app, session_id) == (True, "access_revoked")
    added, removed = events(any_app, "access.owners_changed")
    assert added.message == "changed whose devices team ops may use in folder core: added bob"
    assert added.details == {"team": "ops", "kind": "folder", "value": "core", "added": ["bob"], "removed": [],
                             "owners": ["bob"], "devices": 1, "sessions_ended": 0}
    assert removed.details["removed"] == ["bob"] and removed.details["sessions_ended"] == 1
    assert removed.severity == "warning"
    refused = post(admin, f"/teams/grants/{grant_id}/owners", {f"grant{grant_id}-owners": ["99999"]})
    assert refused.status_code == 422 and "one of them is no longer a user" in refused.get_data(as_text=True)
    assert len(events(any_app, "access.owners_changed")) == 2
    assert post(client_of(any_app, "alice"), f"/teams/grants/{grant_id}/owners", {}).status_code == 403


def test_admins_devices_count_and_a_demoted_admins_stop_counting(any_app, admin):
    make_user(any_app, "dora")
    with any_app.app_context():
        db.session.scalar(select(User).filter_by(username="dora")).is_admin = True
        db.session.commit()
    device = make_device(any_app, "dora", "web1", folder="core")
    tid = team_with_member(any_app, admin)
    grant(admin, tid, "folder", "core")
    alice = client_of(any_app, "alice")
    assert [name for name, _ in listed(alice)] == ["web1"]
    session_id = open_session(any_app, user_id(any_app, "alice"), device)
    token = re.search(r'name="csrf-token" content="([^"]+)"', admin.get("/users/").get_data(as_text=True)).group(1)
    assert admin.post(f"/users/{user_id(any_app, 'dora')}/role", data={"csrf_token": token}).status_code == 302
    assert listed(alice) == []
    assert session_flags(any_app, session_id) == (True, "access_revoked")
    assert events(any_app, "user.role_changed")[-1].details["sessions_ended"] == 1


def test_twins_in_a_list_say_whose_is_whose(any_app, admin):
    make_user(any_app, "bob")
    make_device(any_app, "bob", "web1", folder="core")
    tid = team_with_member(any_app, admin)
    grant(admin, tid, "folder", "core", owners=[user_id(any_app, "bob")])
    make_device(any_app, "alice", "web1")
    make_device(any_app, "alice", "db1")
    assert sorted(listed(client_of(any_app, "alice"))) == [
        ("db1", "ops@127.0.0.1:2222"), ("web1", "shared by bob · ops@127.0.0.1:2222"),
        ("web1", "yours · ops@127.0.0.1:2222")]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_existing_grants_keep_what_they_covered(tmp_path, database):
    url = reset_postgres() if database == "postgresql" else f"sqlite:///{tmp_path / 'old.db'}"
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET_KEY, "INSTANCE_DIR": str(tmp_path),
                      "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        flask_migrate.upgrade(revision="0010_devices_teams")
        run = lambda sql: db.session.execute(sa.text(sql))  # noqa: E731  (the tables as 0010 made them)
        for uid, name in ((1, "bob"), (2, "carol"), (3, "dan")):
            run(f"INSERT INTO users (id, username, password_hash, is_admin, disabled, session_epoch, failed_logins, "
                f"created_at, password_changed_at) VALUES ({uid}, '{name}', 'x', false, false, 0, 0, "
                f"CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")
        for did, owner, folder in ((1, 1, "'core'"), (2, 2, "NULL"), (3, 3, "'edge'")):
            run(f"INSERT INTO devices (id, owner_id, name, host, port, username, auth_type, folder, created_at, "
                f"updated_at) VALUES ({did}, {owner}, 'd{did}', 'h', 22, 'u', 'password', {folder}, "
                f"CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")
        run("INSERT INTO device_tags (device_id, tag) VALUES (2, 'db')")
        run("INSERT INTO teams (id, name, created_at) VALUES (1, 'ops', CURRENT_TIMESTAMP)")
        for gid, kind, value in ((1, "folder", "core"), (2, "tag", "db"), (3, "folder", "none-yet")):
            run(f"INSERT INTO access_grants (id, team_id, kind, value, shares_trail, created_at) VALUES "
                f"({gid}, 1, '{kind}', '{value}', false, CURRENT_TIMESTAMP)")
        db.session.commit()
        flask_migrate.upgrade()
        owners = db.session.execute(select(GrantOwner.grant_id, GrantOwner.user_id)
                                    .order_by(GrantOwner.grant_id)).all()
        db.session.remove()
        db.engine.dispose()
    assert [tuple(row) for row in owners] == [(1, 1), (2, 2)]  # dan's device in edge was under no grant


def test_a_demotion_by_single_sign_on_ends_what_the_admins_devices_no_longer_share(app):
    from app.auth.oidc_people import _apply_role
    from tests.test_teams import events as trail_events

    admin = client_of(app)
    make_user(app, "dora")
    device = make_device(app, "dora", "web1", folder="core")
    tid = team_with_member(app, admin)
    grant(admin, tid, "folder", "core")
    app.config.update(OIDC_ADMIN_GROUP="gatehouse-admins", OIDC_GROUPS_CLAIM="groups")
    with app.test_request_context():
        dora = db.session.scalar(select(User).filter_by(username="dora"))
        dora.is_admin = True
        db.session.commit()
        session_id = open_session(app, user_id(app, "alice"), device)
        _apply_role(dora, {"groups": ["others"]})  # her next sign-in: no longer in the admin group
    assert session_flags(app, session_id) == (True, "access_revoked")
    [event] = trail_events(app, "user.role_changed")
    assert event.details["sessions_ended"] == 1 and event.details["role"] == "user"
