"""Issue 20, item 2: the trail's command filter narrows the events (to those of the sessions where a matching command
was typed), their count, the pager and both exports, for what the viewer may see; through gunicorn, a real sshd
and Chromium."""
import csv
import io
import json
import re
import uuid

import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.terminals.models import SessionCommand
from tests.support import browser_login, live_events, new_user, open_terminal, read_until, wait_for
from tests.test_replay import read_live


def typed_session(server, http, sshd, line):
    """Open a terminal on a new device of http's user, type line, close the tab; return the session id once ended."""
    label = "cf-" + uuid.uuid4().hex[:8]
    device_id = server.add_device(http, sshd, label)
    ws = open_terminal(f"{server.ws_url}/terminals/{device_id}/ws", http, server.url)
    ws.send(line.encode() + b"\necho done-$((3*4))\n")
    read_until(ws, b"done-12")
    session_id = wait_for(lambda: [e.session_id for e in live_events(server, "session.started")
                                   if e.target.startswith(label + " ")])[0]
    wait_for(lambda: read_live(server, select(SessionCommand).where(SessionCommand.session_id == session_id)))
    ws.close()
    wait_for(lambda: [e for e in live_events(server, "session.ended") if e.session_id == session_id])
    return session_id


@pytest.fixture(scope="module")
def story(live_server, sshd):
    """Three ended sessions: the admin's with the marked command, the admin's without, a user's with it."""
    marker = "os-release #" + uuid.uuid4().hex[:8]  # a shell comment: the command is the same, the text unique
    admin = live_server.login()
    name, password = new_user(live_server)
    user = live_server.login(name, password)
    return {
        "marker": marker, "admin": admin, "user": user,
        "admin_match": typed_session(live_server, admin, sshd, f"head -1 /etc/{marker}"),
        "admin_other": typed_session(live_server, admin, sshd, "echo nothing to see"),
        "user_match": typed_session(live_server, user, sshd, f"grep -c NAME /etc/{marker}"),
    }


def events_of(server, session_ids):
    """Return the ids of every event of these sessions, from the server's database."""
    return {e.id for e in read_live(server, select(AuditEvent).where(AuditEvent.session_id.in_(session_ids)))}


def shown(html):
    """Return (total, session ids linked from the rows) of a rendered events table."""
    total = int(re.search(r'<p class="audit-total">(\d+) event', html).group(1))
    return total, set(re.findall(r'class="session-link" href="/sessions/([0-9a-f-]{36})"', html))


@pytest.mark.parametrize("who", ["admin", "user"])
def test_the_command_filter_narrows_events_count_and_pager_to_what_the_viewer_may_see(live_server, story, who):
    wanted = [story["admin_match"], story["user_match"]] if who == "admin" else [story["user_match"]]
    http = story[who]
    html = http.get(f"{live_server.url}/audit/rows", params={"command": story["marker"], "size": 25}).text
    total, linked = shown(html)
    assert linked == set(wanted)  # no other session's events, and never one the viewer may not see
    assert total == len(events_of(live_server, wanted)) >= 2 * len(wanted)  # each one's start and end at least
    assert re.search(f"{total} events <span class=\"command-scope\">of the sessions where a command containing\\s+“", html)
    assert f", page 1 of 1</p>" in html and 'rel="next"' not in html
    everything, _ = shown(http.get(f"{live_server.url}/audit/rows", params={"size": 25}).text)
    assert everything > total  # the unfiltered trail holds more


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_both_exports_hold_only_the_matching_sessions_events_and_name_the_filter(live_server, story, fmt):
    for who, wanted in (("admin", [story["admin_match"], story["user_match"]]), ("user", [story["user_match"]])):
        response = story[who].get(f"{live_server.url}/audit/export.{fmt}", params={"command": story["marker"]})
        assert response.status_code == 200
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(response.text)))
        else:
            rows = [json.loads(line) for line in response.text.splitlines()]
        assert {int(row["id"]) for row in rows} == events_of(live_server, wanted), who
        exported = wait_for(lambda: [e for e in live_events(live_server, "audit.exported")
                                     if e.details["filters"].get("command") == story["marker"]
                                     and e.details["format"] == fmt and e.details["rows"] == len(rows)])
        assert story["marker"] in exported[-1].message and f"exported {len(rows)} audit events" in exported[-1].message


def test_typing_a_command_in_the_trail_narrows_the_table_in_chromium(page, live_server, story):
    browser_login(page, live_server)
    page.goto(f"{live_server.url}/audit/")
    before = int(re.match(r"\d+", page.locator(".audit-total").inner_text()).group(0))
    page.fill('input[name="command"]', story["marker"])
    page.press('input[name="command"]', "Enter")
    page.wait_for_url(re.compile(r".*command=os-release.*"))
    total_text = page.locator(".audit-total").inner_text()
    assert f"of the sessions where a command containing “{story['marker']}” was typed" in total_text
    total = int(re.match(r"\d+", total_text).group(0))
    wanted = {story["admin_match"], story["user_match"]}
    assert total == len(events_of(live_server, list(wanted))) < before
    assert page.locator("table.events tbody tr").count() == total
    links = {href.rsplit("/", 1)[1] for href in page.locator("table.events a.session-link").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))")}
    assert links == wanted
    page.locator(".command-matches tbody tr").first.wait_for()  # the commands' own list is still there
