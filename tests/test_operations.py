"""What load balancers and monitoring ask: /healthz, /readyz and /metrics, in the app and under gunicorn with two
workers (prometheus-client's multiprocess mode adds them up) with a real terminal to a real sshd."""
import re
import subprocess
import sys

import pytest
import requests
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade

from app import MIGRATIONS_DIR
from app.audit.events import record
from app.operations import heads
from app.extensions import db
from tests.support import AuthActions, make_app, open_terminal, read_until, wait_for

TOKEN = "metrics-token-for-the-scraper"


def metric(text, name, **labels):
    """Return the value of one sample in Prometheus' text format, or None when it is absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        found = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if found and ",".join(sorted((found.group(1) or "").split(","))) == wanted:
            return float(found.group(2))
    return None


@pytest.fixture
def metered(tmp_path):
    return make_app(tmp_path, METRICS_TOKEN=TOKEN)


def test_health_answers_without_a_log_in(client):
    answer = client.get("/healthz")
    assert (answer.status_code, answer.text) == (200, "ok\n")
    ready = client.get("/readyz")
    assert (ready.status_code, ready.text) == (200, "ready\n")


def test_ready_says_no_while_the_schema_is_behind(app, client):
    with app.app_context():
        downgrade(revision="-1")
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "not ready: database schema" in answer.text and "flask db upgrade" in answer.text
    with app.app_context():
        upgrade()
    assert client.get("/readyz").status_code == 200


def test_ready_knows_the_heads_alembic_knows():
    assert heads(MIGRATIONS_DIR) == frozenset(ScriptDirectory(MIGRATIONS_DIR).get_heads())


def test_a_serving_process_leaves_out_what_only_the_console_needs(tmp_path):
    """wsgi.py's app serves without Alembic (readyz reads the revisions itself), invoke, or single sign-on's
    client while it is not configured."""
    left_out = ("alembic", "flask_migrate", "invoke", "authlib.integrations", "requests")
    probe = f"import sys, wsgi; print([n for n in {left_out!r} if sys.modules.get(n)])"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            env={"GATEHOUSE_INSTANCE": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_ready_says_no_when_the_database_does_not_answer(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        db.engine.dispose()
    (tmp_path / "test.db").unlink()
    (tmp_path / "test.db").mkdir()  # SQLite cannot open a folder
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503 and "the database does not answer" in answer.text


def test_metrics_are_not_served_without_a_token(client):
    assert client.get("/metrics").status_code == 404


def test_metrics_need_the_token(metered):
    client = metered.test_client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and TOKEN not in wrong.text
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_metrics_count_audit_writes_and_failed_log_ins(metered):
    client = metered.test_client()

    def scrape():
        return client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text

    before = scrape()
    failed = metric(before, "gatehouse_audit_events_total", action="auth.login_failed", outcome="failure") or 0
    writes = metric(before, "gatehouse_audit_write_seconds_count") or 0
    assert AuthActions(client).login(password="not-the-password").status_code == 401
    after = scrape()
    assert metric(after, "gatehouse_audit_events_total", action="auth.login_failed", outcome="failure") == failed + 1
    assert metric(after, "gatehouse_audit_write_seconds_count") >= writes + 1
    assert metric(after, "gatehouse_sessions_open", state="attached") == 0
    assert metric(after, "gatehouse_sessions_open", state="detached") == 0


def test_metrics_show_the_outbox_depth(tmp_path):
    app = make_app(tmp_path, METRICS_TOKEN=TOKEN, SYSLOG_TARGETS=("tcp://127.0.0.1:9",))
    with app.app_context():
        record("auth.logout", "someone logged out", actor="admin")
    text = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert metric(text, "gatehouse_audit_outbox_depth", target="tcp://127.0.0.1:9") >= 1


def test_two_workers_add_up_and_a_terminal_counts(live_servers, sshd):
    server = live_servers(WEB_CONCURRENCY="2", METRICS_TOKEN=TOKEN)
    http = server.login()

    def scrape():
        answer = requests.get(server.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert answer.status_code == 200
        return answer.text

    assert requests.get(server.url + "/healthz", timeout=10).text == "ok\n"
    assert requests.get(server.url + "/readyz", timeout=10).text == "ready\n"
    device = server.add_device(http, sshd, "metered-host")
    ws = open_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
    ws.send(b"echo metered-$((6*7))\n")
    read_until(ws, b"metered-42")
    # Whichever worker answers, the node's sum is the same: one terminal, its bytes both ways.
    for _ in range(6):
        text = scrape()
        assert metric(text, "gatehouse_terminals_open") == 1
        assert metric(text, "gatehouse_terminal_bytes_total", direction="out") > 0
        assert metric(text, "gatehouse_terminal_bytes_total", direction="in") >= len(b"echo metered-$((6*7))\n")
        assert metric(text, "gatehouse_sessions_open", state="attached") == 1
        assert metric(text, "gatehouse_audit_events_total", action="session.started", outcome="success") >= 1
        assert TOKEN not in text and sshd.password not in text
    ws.send(b"exit\n")
    wait_for(lambda: metric(scrape(), "gatehouse_terminals_open") == 0)
