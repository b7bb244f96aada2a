"""Two Gatehouse nodes on one PostgreSQL behind a real nginx that sends each request to the next node (round robin,
no affinity): one trail with the address the proxy saw, whichever node served; a terminate asked on one node ends at
once a session the other holds; a watch through one node shows a session on the other; a node killed outright
leaves its sessions closed as lost by the other, their recordings readable up to the last flush."""
import json
import os
import shutil
import signal
import time
import uuid

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from app.crypto import recording_key
from app.extensions import db
from app.recording.chunks import check, iter_cast
from app.recording.store import LocalStore
from app.terminals.models import TerminalSession
from tests.support import (NGINX_CONF, PG_URL, WAIT_SECONDS, SourceAddressAdapter, closed_within, connect_terminal,
                           console, csrf_from, free_port, live_events, missing, new_user, open_terminal, read_until,
                           reset_postgres, server_app, session_of, start_nginx, wait_for)

CLIENT = "127.0.0.7"  # the address the browser connects to nginx from: what the trail must name
BEAT = 3  # SESSION_HEARTBEAT_SECONDS: a session counts as lost after three missed beats (9 s: no busy node's lag)
PASSWORD = "watcher-password-long"
UPSTREAM = """
  upstream nodes {{ server 127.0.0.1:{a}; server 127.0.0.1:{b}; }}
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://nodes; proxy_http_version 1.1;
    proxy_set_header Host $http_host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade; proxy_read_timeout 1h; }} }}
"""


def signing_key(folder):
    """Write one checkpoint signing key both nodes use (a cluster signs with one key); return its path."""
    path = folder / "audit_signing_key"
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.touch(mode=0o600)
    path.write_bytes(key)
    return path


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, module_live_servers):
    """Nodes a and b (one worker each, one database, one recordings folder, one signing key) and nginx before them."""
    if not os.path.exists(shutil.which("nginx") or "/usr/sbin/nginx"):
        missing("nginx (apt-get install nginx)")
    folder = tmp_path_factory.mktemp("two-nodes")
    shared = {"DATABASE_URL": reset_postgres(PG_URL), "RECORDINGS_DIR": str(folder / "recordings"),
              "AUDIT_SIGNING_KEY": str(signing_key(folder)), "TRUSTED_PROXY_HOPS": "1",
              "SESSION_HEARTBEAT_SECONDS": str(BEAT), "WEB_CONCURRENCY": "1"}
    a = module_live_servers(workdir=folder / "a", GATEHOUSE_NODE="node-a", **shared)
    b = module_live_servers(workdir=folder / "b", GATEHOUSE_NODE="node-b", **shared)
    proxy = folder / "nginx"
    proxy.mkdir()

    def write_conf():
        port = free_port()
        servers = UPSTREAM.format(a=a.port, b=b.port, port=port)
        (proxy / "nginx.conf").write_text(NGINX_CONF.format(dir=proxy, servers=servers))
        return port

    nginx, port = start_nginx(proxy, write_conf)
    try:
        yield a, b, f"http://127.0.0.1:{port}"
    finally:
        nginx.terminate()
        nginx.wait(10)


def login(base, username, password, spoofed="10.9.8.7"):
    """Log in through base from CLIENT, sending a forged X-Forwarded-For too; return the requests session."""
    http = requests.Session()
    http.mount("http://", SourceAddressAdapter(CLIENT))
    http.headers["X-Forwarded-For"] = spoofed  # nginx appends the real peer; one trusted hop takes that
    page = http.get(base + "/login", timeout=WAIT_SECONDS)
    answer = http.post(base + "/login", data={"username": username, "password": password,
                                              "csrf_token": csrf_from(page.text)}, allow_redirects=False,
                       timeout=WAIT_SECONDS)
    assert answer.status_code == 302, answer.text[:300]
    return http


def holder(server, session_id):
    """Return the process name (node:pid) that holds a session, from its row."""
    with server_app(server).app_context():
        worker = db.session.scalar(select(TerminalSession.worker).where(TerminalSession.id == session_id))
        db.engine.dispose()
    return worker


def test_either_node_writes_one_trail_with_the_address_the_proxy_saw(nodes, sshd, monkeypatch):
    a, b, proxy = nodes
    name, password = new_user(a)
    device = a.add_device(a.login(name, password), sshd, "both-" + name)  # straight to node a: not counted below
    before = max(e.id for e in live_events(a, "auth.login"))
    http = login(proxy, name, password)
    sockets = []
    for _ in range(4):  # round robin: the upgrades alternate between the nodes
        sockets.append(open_terminal(f"{proxy.replace('http:', 'ws:')}/terminals/{device}/ws", http, proxy,
                                     monkeypatch, source=CLIENT))
    for _ in range(3):
        login(proxy, name, password)
    mine = [e for e in live_events(a, "session.started") if e.actor == name]
    assert len(mine) == 4
    assert {holder(a, e.session_id).split(":")[0] for e in mine} == {"node-a", "node-b"}
    logins = [e for e in live_events(b, "auth.login") if e.actor == name and e.id > before]
    assert len(logins) == 4
    assert {e.source_ip for e in mine + logins} == {CLIENT}  # never the forged address, never the proxy's
    for ws in sockets:
        ws.close()
    console(b, "audit", "verify")  # exits 0: the chain both nodes wrote is whole


def session_on(server, sshd):
    """Open a new user's terminal directly on one node; return (its socket, its session id)."""
    name, password = new_user(server)
    http = server.login(name, password)
    device = server.add_device(http, sshd, "on-" + name)
    ws = connect_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
    session_id = session_of(ws)
    ws.send(b"echo up-$((6*7))\n")
    read_until(ws, b"up-42")
    return ws, session_id


def test_a_terminate_on_node_b_ends_a_session_on_node_a_within_a_second(nodes, sshd):
    a, b, _ = nodes
    terminal, session_id = session_on(a, sshd)
    assert holder(a, session_id).startswith("node-a:")
    admin = b.login()
    token = b.csrf(admin)
    began = time.monotonic()
    answer = admin.post(f"{b.url}/terminals/sessions/{session_id}/terminate", data={"csrf_token": token,
                                                                                    "reason": "two nodes"},
                        timeout=WAIT_SECONDS)
    assert answer.status_code == 204  # the flag is written and the holder told
    answered = time.monotonic() - began
    took = answered + closed_within(terminal, WAIT_SECONDS)
    print(f"terminate on node b answered after {answered:.3f} s, session on node a closed after {took:.3f} s")
    assert took - answered < 1.0
    ended = wait_for(lambda: [e for e in live_events(a, "session.ended") if e.session_id == session_id])
    assert ended[0].details["reason"] == "terminated"


def closing_message(ws, timeout):
    """Return a watch socket's closing message and how long it took to come."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        frame = ws.receive(timeout=0.05)
        if isinstance(frame, str) and json.loads(frame).get("type") == "closed":
            return json.loads(frame)["message"], time.monotonic() - began
    raise AssertionError(f"no closing message within {timeout} s")


def test_a_watcher_on_node_b_sees_a_session_on_node_a_until_logging_out_on_node_a(nodes, sshd):
    a, b, _ = nodes
    terminal, session_id = session_on(a, sshd)
    watcher = "w-" + uuid.uuid4().hex[:8]
    console(b, "users", "create", watcher, "--admin", "--password", PASSWORD, "--no-must-change")
    http = b.login(watcher, PASSWORD)
    watching = connect_terminal(f"{b.ws_url}/sessions/{session_id}/watch/ws", http, b.url)
    try:
        read_until(watching, b"up-42")  # the screen as it stands, drawn on node a
        terminal.send(b"echo from-a-$((7*3))\n")
        read_until(watching, b"from-a-21")
        started = [e for e in live_events(b, "session.watch_started") if e.session_id == session_id]
        assert [(e.actor, e.source_ip) for e in started] == [(watcher, "127.0.0.1")]
        # The same log-in (one cookie, one secret) ends on node a: node b hears of it and ends the watch at once.
        token, began = a.csrf(http), time.monotonic()
        assert http.post(f"{a.url}/logout", data={"csrf_token": token}, timeout=WAIT_SECONDS).ok
        message, _ = closing_message(watching, WAIT_SECONDS)
        took = time.monotonic() - began
        print(f"log-out on node a, watch through node b closed after {took:.3f} s")
        assert message == "You logged out; watching stopped." and took < 2.0
        ended = wait_for(lambda: [e for e in live_events(b, "session.watch_ended") if e.session_id == session_id])
        assert [(e.actor, e.details["reason"]) for e in ended] == [(watcher, "logged_out")]
    finally:
        for ws in (watching, terminal):
            if ws.connected:
                ws.close()


def recorded_output(a, session_id):
    """Return the output a session's recording holds so far (its chunks written), '' while none can be read."""
    try:
        with server_app(a).app_context():
            key = recording_key()
        text = b"".join(iter_cast(LocalStore(a.env["RECORDINGS_DIR"]), session_id, key)).decode()
    except Exception:  # nothing flushed yet, or a chunk half written: the next look reads it
        return ""
    return "".join(event[2] for event in map(json.loads, text.splitlines()[1:]) if event[1] == "o")


def test_a_killed_node_leaves_its_sessions_lost_with_their_recordings_readable(nodes, sshd):
    a, b, _ = nodes
    terminal, session_id = session_on(a, sshd)
    terminal.send(b"echo kept-$((8*8))\n")
    read_until(terminal, b"kept-64")
    wait_for(lambda: "kept-64" in recorded_output(a, session_id))  # flushed: what the kill cannot take back
    try:
        a.stop(signal.SIGKILL)
        killed = time.monotonic()
        ended = wait_for(lambda: [e for e in live_events(b, "session.ended") if e.session_id == session_id],
                         timeout=2 * WAIT_SECONDS)
        took = time.monotonic() - killed
        print(f"node a killed: its session closed as lost by node b after {took:.1f} s")
        assert ended[0].details["reason"] == "lost"
        assert took < 2 * 3 * BEAT + 10  # three missed beats, then node b's next sweep (every three beats)
        seal = ended[0].details["recording"]
        with server_app(b).app_context():
            key = recording_key()
        assert check(LocalStore(b.env["RECORDINGS_DIR"]), session_id, key, seal)[0] == "verified"
        assert "kept-64" in recorded_output(b, session_id)
    finally:
        a.start()  # the same port and folder: the proxy finds it again
