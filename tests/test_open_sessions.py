"""Another user's open terminal is read only through Watch: a member whose grant shares the trail, and an admin, get
its page, its recording and its commands only once it ended; every read is in the session user's own trail."""
import secrets

from sqlalchemy import select

from app.audit.query import visible_events
from app.auth.models import User
from app.extensions import db
from app.teams.models import GRANT_FOLDER, Grant, Team, TeamMember
from tests.support import connect_terminal, live_events, new_user, read_until, server_app, session_of, wait_for

STILL_OPEN = "This session is still open; its recording can be read when it ends."


def share_with_team(server, folder, names):
    """Put the named users in a new team with a grant on folder that shares the trail."""
    app = server_app(server)
    with app.app_context():
        team = Team(name="ops-" + secrets.token_hex(3))
        db.session.add(team)
        db.session.flush()
        for name in names:
            member_id = db.session.scalar(select(User.id).filter_by(username=name))
            db.session.add(TeamMember(team_id=team.id, user_id=member_id))
        db.session.add(Grant(team_id=team.id, kind=GRANT_FOLDER, value=folder, shares_trail=True, created_by="admin"))
        db.session.commit()
        db.engine.dispose()


def owners_trail(server, name):
    """Return the events the named user may read in the trail."""
    app = server_app(server)
    with app.test_request_context():
        user = db.session.scalar(select(User).filter_by(username=name))
        rows = db.session.scalars(visible_events(user)).all()
        db.session.expunge_all()
        db.engine.dispose()
    return rows


def open_terminal(server, http, device):
    """Open a terminal as http's user; return (its websocket, its session id) once the shell answers."""
    ws = connect_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
    return ws, session_of(ws)


def commands_found(server, http, text):
    """Return the command search's answer for text, as http's user sees it."""
    return http.get(f"{server.url}/terminals/commands", params={"command": text}, timeout=10).text


def test_an_open_session_is_read_only_by_its_user_until_it_ends(live_server, sshd):
    server, token = live_server, secrets.token_hex(3)
    admin = server.login()
    folder = f"core-{token}"
    device = server.add_device(admin, sshd, f"shared-{token}", folder=folder)  # an admin's device: the grant covers it
    (owner, password), (member, member_password) = new_user(server), new_user(server)
    share_with_team(server, folder, [owner, member])
    owner_http, member_http = server.login(owner, password), server.login(member, member_password)
    ws, session_id = open_terminal(server, owner_http, device)
    page, cast = f"{server.url}/sessions/{session_id}", f"{server.url}/sessions/{session_id}/recording.cast"
    marker = f"typed-{token}"
    try:
        ws.send(f"echo {marker}-$((6*7))\n".encode())
        read_until(ws, f"{marker}-42".encode())
        # The command is stored (its own user finds it, and reads their own open session) ...
        wait_for(lambda: f"echo {marker}" in commands_found(server, owner_http, marker))
        assert owner_http.get(page, timeout=10).status_code == 200
        assert session_id in member_http.get(f"{server.url}/terminals/connected", timeout=10).text  # listed
        # ... but the member reads none of it while it is open, nor does an admin (they watch, and are seen).
        assert f"echo {marker}" not in commands_found(server, member_http, marker)
        assert f"echo {marker}" not in commands_found(server, admin, marker)
        refused = member_http.get(page, timeout=10)
        assert refused.status_code == 403 and STILL_OPEN in refused.text and "Watch live" not in refused.text
        recording = member_http.get(cast, timeout=10)
        assert recording.status_code == 403 and recording.text.strip() == STILL_OPEN and marker not in recording.text
        refused = admin.get(page, timeout=10)
        assert refused.status_code == 403 and f"/sessions/{session_id}/watch" in refused.text
        assert admin.get(cast, timeout=10).status_code == 403
    finally:
        ws.close()
    wait_for(lambda: [e for e in live_events(server, "session.ended") if e.session_id == session_id])

    assert f"echo {marker}" in commands_found(server, member_http, marker)  # ended: now the member reads it all
    assert member_http.get(page, timeout=10).status_code == 200
    recording = member_http.get(cast, timeout=10)
    assert recording.status_code == 200 and f"{marker}-42" in recording.text
    read = wait_for(lambda: [e for e in live_events(server, "recording.viewed")
                             if e.session_id == session_id and e.actor == member])
    assert owner != member  # a read by someone else ...
    assert {e.id for e in read} <= {e.id for e in owners_trail(server, owner)}  # ... in the owner's own trail
    assert not [e for e in live_events(server, "recording.viewed")
                if e.session_id == session_id and e.actor == "admin"]  # the refused reads were no reads
