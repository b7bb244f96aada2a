"""A worker at its terminal limit refuses a new terminal clearly (a message on the tab, session.refused with
reason node_full) instead of leaving it hanging; a place freed by a closed terminal is taken again; a detached
terminal keeps its place and is resumed. Real sshd, gunicorn's gevent worker, and a real Chromium for the tab."""
import json
import time

import pytest

from config import Config, ConfigError
from tests.support import browser_login, connect_terminal, live_events, open_terminal, wait_for
from tests.test_resume import open_detached, resume


def refusal(ws, timeout=30):
    """Read a terminal websocket until its error message; return that message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = ws.receive(timeout=0.5)
        if isinstance(frame, str) and json.loads(frame).get("type") == "error":
            return json.loads(frame)
    raise AssertionError("no error message came")


@pytest.mark.parametrize("connections, limit", [("2000", 1800), ("100", 90), ("6", 2)])
def test_the_limit_comes_from_the_worker_connections(monkeypatch, tmp_path, connections, limit):
    monkeypatch.setenv("GATEHOUSE_INSTANCE", str(tmp_path))
    monkeypatch.delenv("MAX_TERMINALS_PER_WORKER", raising=False)
    monkeypatch.setenv("GATEHOUSE_WORKER_CONNECTIONS", connections)
    assert Config().MAX_TERMINALS_PER_WORKER == limit


@pytest.mark.parametrize("value", ["0", "1997", "many"])
def test_a_limit_past_the_connections_stops_the_start(monkeypatch, tmp_path, value):
    monkeypatch.setenv("GATEHOUSE_INSTANCE", str(tmp_path))
    monkeypatch.delenv("GATEHOUSE_WORKER_CONNECTIONS", raising=False)
    monkeypatch.setenv("MAX_TERMINALS_PER_WORKER", value)
    with pytest.raises(ConfigError, match="MAX_TERMINALS_PER_WORKER"):
        Config()


def test_a_full_worker_refuses_a_terminal_with_a_message_and_an_event(module_live_servers, sshd):
    server = module_live_servers(GATEHOUSE_WORKER_CONNECTIONS="6")  # two terminals at most
    http = server.login()
    device = server.add_device(http, sshd, "full-node")
    url = f"{server.ws_url}/terminals/{device}/ws"
    held = [open_terminal(url, http, server.url) for _ in range(2)]

    refused = connect_terminal(url, http, server.url)
    answer = refusal(refused)
    assert answer["reason"] == "node_full"
    assert "holds as many terminals as it can take (2)" in answer["message"]
    event = wait_for(lambda: live_events(server, "session.refused"))[-1]
    assert event.outcome == "failure" and event.target.startswith("full-node")
    assert event.details == {"reason": "node_full", "limit": 2}
    assert len(live_events(server, "session.started")) == 2

    held.pop().close()  # a place is free again once its session ended
    wait_for(lambda: len(live_events(server, "session.ended")) == 1)
    held.append(open_terminal(url, http, server.url))
    assert len(live_events(server, "session.started")) == 3
    for ws in held:
        ws.close()


def test_the_tab_says_the_server_is_full(module_live_servers, sshd, page):
    server = module_live_servers(MAX_TERMINALS_PER_WORKER="1")
    http = server.login()
    device = server.add_device(http, sshd, "full-tab")
    held = open_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
    browser_login(page, server)
    page.locator('button.open-terminal[data-device-name="full-tab"]').first.click()
    panel = page.locator(".terminal-panel:not([hidden])")
    panel.locator(".xterm-rows").get_by_text("holds as many terminals as it can take (1)").wait_for()
    assert wait_for(lambda: live_events(server, "session.refused"))[-1].details["reason"] == "node_full"
    held.close()


def test_a_detached_terminal_holds_its_place_and_its_owner_resumes_it_at_the_limit(module_live_servers, sshd):
    server = module_live_servers(MAX_TERMINALS_PER_WORKER="1")
    http = server.login()
    _first, session_id = open_detached(server, http, sshd)  # kept for a resume: it still holds the one place

    device = server.add_device(http, sshd, "full-detached")
    refused = connect_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
    assert refusal(refused)["reason"] == "node_full"
    again = resume(server, http, session_id)
    assert again.control("resumed")["session"] == session_id  # a resume takes no new place: never refused
    again.ws.close()
