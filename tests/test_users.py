"""User administration: admin only, every change audited, history kept when a user goes."""
import pytest
from sqlalchemy import select

from app.audit.integrity import verify
from app.audit.models import AuditEvent
from app.auth.models import User
from app.extensions import db
from tests.conftest import AuthActions


def create(client, auth, username="alice", password="alice-password-1", admin=False):
    data = {"username": username, "password": password, "csrf_token": auth.csrf("/users/")}
    if admin:
        data["is_admin"] = "y"
    return client.post("/users/", data=data)


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
    assert alice.get("/users/").status_code == 403  # not an admin
    uid = user_id(app, "alice")
    token = auth.csrf("/users/")
    client.post(f"/users/{uid}/disable", data={"csrf_token": token})
    assert alice.get("/").status_code == 302  # her session ended
    assert alice_auth.login("alice", "alice-password-1").status_code == 401
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
