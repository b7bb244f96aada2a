"""User administration: admin only, every change audited, history kept when a user goes."""
import pytest
from sqlalchemy import select

from app.audit.integrity import verify
from app.audit.models import AuditEvent
from app.auth.models import User
from app.extensions import db
from tests.support import AuthActions


def create(client, auth, username="alice", password="alice-password-1", admin=False):
    data = {"username": username, "password": password, "csrf_token": auth.csrf("/users/")}
    if admin:
        data["is_admin"] = "y"
    return client.post("/users/", data=data)


def change_password(client, current, new):
    """Change the logged-in user's own password through the form; return the answer."""
    token = AuthActions(client).csrf("/account/password")
    response = client.post("/account/password", data={"current": current, "new": new, "confirm": new,
                                                      "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return response


def user_id(app, username):
    with app.app_context():
        return db.session.scalar(select(User.id).filter_by(username=username))


def actions(app):
    with app.app_context():
        return db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()


@pytest.mark.parametrize("username,password,message", [
    ("", "long-enough-password", b"Enter a username."),
    ("bad name", "long-enough-password", b"Use letters, digits"),
    ("<script>", "long-enough-password", b"Use letters, digits"),
    ("admin", "long-enough-password", b"This username is taken."),
    ("ADMIN", "long-enough-password", b"This username is taken."),  # names are unique regardless of case
    (" bob", "long-enough-password", b"may not begin or end with a space"),
    ("bo\tb", "long-enough-password", b"may not contain control characters"),
    ("bo\x00b", "long-enough-password", b"may not contain control characters"),
    ("b" * 65, "long-enough-password", b"at most 64 characters"),
    ("bob", "short", b"Use at least 12 characters."),
])
def test_create_user_rejects_bad_input(app, client, auth, username, password, message):
    auth.login()
    response = create(client, auth, username, password)
    assert response.status_code == 422 and message in response.data
    assert b"<script>" not in response.data.split(b"<main>")[1].split(b"</main>")[0].replace(b"&lt;script&gt;", b"")


def test_user_lifecycle_is_audited_and_history_survives_deletion(app, client, auth):
    auth.login()
    assert create(client, auth).status_code == 302
    alice = app.test_client()
    alice_auth = AuthActions(alice)
    assert alice_auth.login("alice", "alice-password-1").status_code == 302
    assert alice.get("/users/").headers["Location"] == "/account/password"  # the admin chose her password
    change_password(alice, "alice-password-1", "alice-own-password")
    assert alice.get("/users/").status_code == 403  # not an admin
    uid = user_id(app, "alice")
    token = auth.csrf("/users/")
    client.post(f"/users/{uid}/disable", data={"csrf_token": token})
    assert alice.get("/").status_code == 302  # her session ended
    assert alice_auth.login("alice", "alice-own-password").status_code == 401
    client.post(f"/users/{uid}/disable", data={"csrf_token": token})
    client.post(f"/users/{uid}/role", data={"csrf_token": token})
    with app.app_context():
        assert db.session.get(User, uid).is_admin
    client.post(f"/users/{uid}/delete", data={"csrf_token": token})
    assert user_id(app, "alice") is None
    trail = actions(app)
    for action in ("user.created", "user.disabled", "user.updated", "user.role_changed", "user.deleted"):
        assert action in trail
    with app.app_context():
        her_login = db.session.scalars(select(AuditEvent).where(AuditEvent.actor == "alice",
                                                                AuditEvent.action == "auth.login")).one()
        assert her_login.user_id == uid  # kept as written: the chain covers it
        assert verify().ok


def test_admin_cannot_change_own_account(app, client, auth):
    auth.login()
    token = auth.csrf("/users/")
    me = user_id(app, "admin")
    for action in ("disable", "role", "delete"):
        assert client.post(f"/users/{me}/{action}", data={"csrf_token": token}).status_code == 400


def test_users_cli(app, runner, client, auth):
    short = runner.invoke(args=["users", "create", "carol", "--password", "short"])
    assert short.exit_code != 0 and "at least 12 characters" in short.output
    created = runner.invoke(args=["users", "create", "carol", "--admin", "--password", "carol-password-1"])
    assert created.exit_code == 0 and "created carol" in created.output
    assert runner.invoke(args=["users", "create", "carol", "--password", "carol-password-1"]).exit_code != 0
    reset = runner.invoke(args=["users", "reset-password", "admin", "--password", "reset-password-12"])
    assert reset.exit_code == 0
    assert auth.login().status_code == 401
    assert auth.login("admin", "reset-password-12").status_code == 302
    assert runner.invoke(args=["users", "reset-password", "nobody", "--password", "x" * 20]).exit_code != 0
    assert {"user.created", "auth.password_changed"} <= set(actions(app))


@pytest.mark.parametrize("action, reason", [("disable", "user_disabled"), ("delete", "user_deleted")])
def test_disabling_or_deleting_a_user_ends_their_log_ins_and_terminals(app, client, auth, action, reason):
    import uuid

    from app.auth.models import LoginSession
    from app.terminals.models import TerminalSession

    auth.login()
    create(client, auth)
    alice = app.test_client()
    assert AuthActions(alice).login("alice", "alice-password-1").status_code == 302
    uid = user_id(app, "alice")
    with app.app_context():
        login_id = db.session.scalars(select(LoginSession.id).where(LoginSession.user_id == uid)).one()
        session_id = str(uuid.uuid4())
        db.session.add(TerminalSession(id=session_id, user_id=uid, actor="alice", target="web1 (10.0.0.5:22)",
                                       source_ip="10.1.1.1", worker="elsewhere:1", login_session_id=login_id))
        db.session.commit()
    client.post(f"/users/{uid}/{action}", data={"csrf_token": auth.csrf("/users/")})
    assert alice.get("/").status_code == 302  # her browser is logged out at once
    with app.app_context():
        row = db.session.get(TerminalSession, session_id)
        assert (row.terminate_requested, row.terminate_reason) == (True, reason)  # its holder ends it within 1 s
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.session_revoked")).one()
    assert event.details["reason"] == reason and event.details["user"] == "alice" and event.actor == "admin"


@pytest.mark.parametrize("username,password,message", [
    (" bob ", "long-enough-password", "may not begin or end with a space"),
    ("bo\x01b", "long-enough-password", "may not contain control characters"),
    ("bob smith", "long-enough-password", "Use letters, digits"),
    ("Admin", "long-enough-password", "This username is taken."),
    ("bob", "short", "at least 12 characters"),
])
def test_users_cli_follows_the_same_rule(app, runner, username, password, message):
    result = runner.invoke(args=["users", "create", username, "--password", password])
    assert result.exit_code != 0 and message in result.output
    assert set(actions(app)) == {"user.created"}  # only the first admin


def test_every_way_of_creating_a_user_records_it(app, runner, client, auth):
    from tests.support import logged_in_user

    auth.login()
    assert create(client, auth, "web.user").status_code == 302
    assert runner.invoke(args=["users", "create", "cli.user", "--password", "cli-password-12"]).exit_code == 0
    logged_in_user(app, "fixture.user")
    with app.app_context():
        created = db.session.scalars(select(AuditEvent).filter_by(action="user.created").order_by(AuditEvent.id)).all()
    assert [(e.actor, e.message, e.details["username"]) for e in created] == [
        ("system", "created first admin admin", "admin"),
        ("admin", "created user web.user", "web.user"),
        ("console", "created user cli.user from the console", "cli.user"),
        ("console", "created user fixture.user from the console", "fixture.user"),
    ]


def test_find_user_ignores_case_and_prefers_an_exact_match(app):
    from app.auth.accounts import find_user

    with app.app_context():
        assert find_user("ADMIN").username == "admin"
        db.session.add(User(username="Carol", password_hash="x"))  # an older pair, from before the rule
        db.session.add(User(username="carol", password_hash="x"))
        db.session.commit()
        assert find_user("carol").username == "carol" and find_user("Carol").username == "Carol"
        assert find_user("CAROL").username in ("Carol", "carol") and find_user("nobody") is None


@pytest.mark.parametrize("setting,value,message", [
    ("ADMIN_USER", "root admin", "ADMIN_USER: Use letters, digits"),
    ("ADMIN_USER", " admin", "ADMIN_USER: A username may not begin or end with a space."),
    ("ADMIN_PASSWORD", "short", "ADMIN_PASSWORD: Use at least 12 characters."),
])
def test_first_admin_follows_the_rule_or_the_start_stops(tmp_path, setting, value, message):
    from config import ConfigError
    from tests.support import make_app

    with pytest.raises(ConfigError, match=message):
        make_app(tmp_path, **{setting: value})


def test_generated_first_admin_password_meets_a_long_minimum(tmp_path, capfd):
    from tests.support import make_app

    app = make_app(tmp_path, ADMIN_PASSWORD=None, PASSWORD_MIN_LENGTH=40)
    password = capfd.readouterr().err.split("with password: ")[1].split()[0]
    assert len(password) >= 40
    assert AuthActions(app.test_client()).login("admin", password).status_code == 302
