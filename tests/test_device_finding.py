"""Issue 15, item 1: finding a device among many: folders, tags, favourites, recent, last use, the port check,
search as you type and the quick-connect palette."""
import os
import re
import socket
from datetime import timedelta

import pytest
from sqlalchemy import select

from app import crypto
from app.audit.models import AuditEvent
from app.auth.models import User
from app.dbtypes import iso_utc, now_utc
from app.devices import reachability
from app.devices.models import Device, Favourite
from app.extensions import db
from app.jobs.table import app_jobs
from app.terminals.models import TerminalSession
from tests.support import AuthActions, browser_login, csrf_from, new_user, server_app, wait_for

SHOTS = os.environ.get("GATEHOUSE_SHOTS")


def add_device(client, **fields):
    """POST the device form; return the response."""
    page = client.get("/devices/new")
    data = {"csrf_token": csrf_from(page.get_data(as_text=True)), "name": "box", "host": "10.1.2.3", "port": "22",
            "username": "ops", "auth_type": "password", "password": "device-secret-pw", **fields}
    return client.post("/devices/", data=data, headers={"HX-Request": "true"})


def test_folder_and_tags_are_saved_normalised_and_audited(any_app):
    client = any_app.test_client()
    AuthActions(client).login()
    reply = add_device(client, name="edge-1", folder="  Core   routers ", tags="Prod, dc1 prod,  edge")
    assert reply.status_code == 200
    with any_app.app_context():
        device = db.session.scalar(select(Device).filter_by(name="edge-1"))
        assert (device.folder, device.tags) == ("Core routers", ["dc1", "edge", "prod"])
        event = db.session.scalars(select(AuditEvent).filter_by(action="device.created")).all()[-1]
        assert event.details["folder"] == "Core routers" and event.details["tags"] == ["dc1", "edge", "prod"]
        device_id = device.id
    html = client.get("/devices/").get_data(as_text=True)
    assert 'data-folder="Core routers"' in html and '<span class="tag">edge</span>' in html
    edit = client.get(f"/devices/{device_id}/edit").get_data(as_text=True)
    assert 'value="dc1, edge, prod"' in edit  # the tags come back as typed, not as a list


@pytest.mark.parametrize("tags, message", [
    ("ok, <script>", "is not"), (",".join(f"t{i}" for i in range(17)), "At most 16 tags"), ("a" * 33, "is not")])
def test_bad_tags_get_a_clear_error_and_keep_the_form(app, auth, client, tags, message):
    auth.login()
    reply = add_device(client, name="edge-2", tags=tags)
    assert reply.status_code == 422
    html = reply.get_data(as_text=True)
    assert message in html and 'value="edge-2"' in html and "<script>" not in html.replace("&lt;script&gt;", "")
    with app.app_context():
        assert db.session.scalar(select(Device).filter_by(name="edge-2")) is None


def test_favourites_recent_and_last_use_lead_the_list(any_app):
    client = any_app.test_client()
    AuthActions(client).login()
    for name in ("alpha", "bravo", "charlie"):
        assert add_device(client, name=name).status_code == 200
    with any_app.app_context():
        ids = {d.name: d.id for d in db.session.scalars(select(Device))}
        admin = db.session.scalar(select(User).filter_by(username="admin"))
        start = now_utc() - timedelta(hours=2)
        for minutes, name in enumerate(["alpha", "charlie", "alpha"]):
            db.session.add(TerminalSession(id=f"00000000-0000-0000-0000-00000000000{minutes}", user_id=admin.id,
                                           device_id=ids[name], actor="admin", target=name, worker="w",
                                           started_at=start + timedelta(minutes=minutes)))
        db.session.get(Device, ids["charlie"]).last_used_at = start
        db.session.commit()
    html = client.get("/devices/").get_data(as_text=True)
    recent = html.split("<h3>Recent</h3>")[1].split("</section>")[0]
    assert re.findall(r'data-device-name="(\w+)"', recent) == ["alpha", "charlie"]  # last used first
    assert "<h3>Favourites</h3>" not in html
    assert f'used <time class="short" datetime="{iso_utc(start)}">' in html
    page = client.get("/").get_data(as_text=True)
    reply = client.post(f"/devices/{ids['bravo']}/favourite", headers={"X-CSRFToken": csrf_from(page),
                                                                       "HX-Request": "true"})
    html = reply.get_data(as_text=True)
    favourites = html.split("<h3>Favourites</h3>")[1].split("</section>")[0]
    assert re.findall(r'data-device-name="(\w+)"', favourites) == ["bravo"]
    assert re.search(r'id="device-actions-\d+"[^>]*aria-label="Actions for bravo"[^>]*>\s*<button[^>]*class="star on"'
                     r'[^>]*>\s*<svg[^<]*<path[^<]*</svg>Remove from favourites</button>', html)
    assert html.count(f'id="device-{ids["bravo"]}"') == 1  # the copy under Favourites has no id of its own
    reply = client.post(f"/devices/{ids['bravo']}/favourite", headers={"X-CSRFToken": csrf_from(page)})
    assert "<h3>Favourites</h3>" not in reply.get_data(as_text=True)
    with any_app.app_context():
        assert db.session.scalar(select(Favourite)) is None


def test_a_favourite_of_a_device_one_may_not_use_is_404(app, auth, client):
    auth.login()
    with app.app_context():
        other = User(username="other", is_admin=False)
        other.set_password("other-password-long")
        db.session.add(other)
        db.session.flush()
        device = Device(owner_id=other.id, name="theirs", host="10.0.0.9", port=22, username="x",
                        password_enc=crypto.encrypt("pw", "password"))
        db.session.add(device)
        db.session.commit()
        device_id = device.id
    page = client.get("/").get_data(as_text=True)
    assert client.post(f"/devices/{device_id}/favourite", headers={"X-CSRFToken": csrf_from(page)}).status_code == 404


def test_port_check_marks_answering_and_silent_ports(any_app):
    """The background check connects to loopback only here: one listening port, one closed."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: refused at once
    app = any_app
    app.config["PORT_CHECK_SECONDS"] = 60
    try:
        with app.app_context():
            admin = db.session.scalar(select(User).filter_by(username="admin"))
            for name, port in (("up", listening.getsockname()[1]), ("down", closed.getsockname()[1])):
                db.session.add(Device(owner_id=admin.id, name=name, host="127.0.0.1", port=port, username="x",
                                      password_enc=crypto.encrypt("pw", "password")))
            db.session.commit()
        assert reachability.check_round(app) == 2
        assert reachability.check_round(app) == 0  # checked a moment ago: not due again
        with app.app_context():
            state = {d.name: d.port_open for d in db.session.scalars(select(Device))}
        assert state == {"up": True, "down": False}
    finally:
        listening.close()
        closed.close()
    client = app.test_client()
    AuthActions(client).login()
    html = client.get("/devices/").get_data(as_text=True)
    assert html.count('class="port-state up"') == 1 and html.count('class="port-state down"') == 1
    assert 'aria-label="Port did not answer at the last check"' in html


def test_port_check_is_off_at_zero(app):
    app.config["PORT_CHECK_SECONDS"] = 0
    assert "port-check" not in {job.name for job in app_jobs(app)}  # no round is ever started


# ---- In Chromium: 200 devices, search, keys, the palette, folders, phone width ----

def seed_many(server, owner, sshd, count=200):
    """Give owner count devices in four folders, one of them the real sshd; return its name."""
    app = server_app(server)
    target = "db-primary-117"
    with app.app_context():
        user = db.session.scalar(select(User).filter_by(username=owner))
        password = crypto.encrypt(sshd.password, "password")
        for i in range(count):
            name = target if i == 117 else f"host-{i:03d}"
            device = Device(owner_id=user.id, name=name, host="127.0.0.1" if name == target else f"10.9.{i // 250}.{i % 250}",
                            port=sshd.port if name == target else 22, username=sshd.user if name == target else "ops",
                            password_enc=password, folder=("core", "edge", "lab", None)[i % 4])
            device.tags = ["prod", f"rack{i % 7}"] if i % 2 else ["staging"]
            db.session.add(device)
        db.session.commit()
        db.engine.dispose()
    return target


@pytest.fixture(scope="module")
def crowd(live_server, sshd):
    name, password = new_user(live_server)
    target = seed_many(live_server, name, sshd)
    return name, password, target


def test_search_among_200_finds_one_and_enter_opens_its_terminal(page, live_server, crowd):
    user, password, target = crowd
    browser_login(page, live_server, user, password)
    assert page.locator("#device-list li.device[id]").count() == 200
    page.locator("body").press("/")
    assert page.evaluate("document.activeElement.id") == "device-search"
    page.keyboard.type("primary")
    visible = page.locator("#device-list li.device[id]:visible")
    assert visible.count() == 1 and target in visible.inner_text()
    assert page.locator("#device-search-status").inner_text() == "1 of 200 devices match"
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/devices-search-desktop.png")
    page.keyboard.press("Enter")
    panel = page.locator(".terminal-panel").nth(0)
    panel.locator(".xterm-rows").get_by_text(re.compile(r"gatehouse-test@.*\$")).first.wait_for()
    page.keyboard.type("echo found-$((40+2))")
    page.keyboard.press("Enter")
    panel.locator(".xterm-rows").get_by_text("found-42").wait_for()
    assert page.locator('[role="tab"]').first.inner_text().startswith(target)


def test_words_match_across_fields_and_arrows_move(page, live_server, crowd):
    user, password, _ = crowd
    browser_login(page, live_server, user, password)
    search = page.locator("#device-search")
    search.fill("rack3 edge")  # two words: both must match, in any field (tag and folder here)
    shown = page.locator("#device-list li.device[id]:visible")
    expected = [i for i in range(200) if i % 2 and i % 7 == 3 and i % 4 == 1]
    assert shown.count() == len(expected) > 0
    assert page.locator("#device-list .group.pinned:visible").count() == 0
    search.press("ArrowDown")
    first = page.evaluate("document.activeElement.dataset.deviceName")
    page.keyboard.press("ArrowDown")
    second = page.evaluate("document.activeElement.dataset.deviceName")
    assert (first, second) == (f"host-{expected[0]:03d}", f"host-{expected[1]:03d}")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.activeElement.id") == "device-search"
    search.press("Escape")
    assert search.input_value() == "" and page.locator("#device-list li.device[id]:visible").count() == 200
    search.fill("no-such-device")
    assert page.locator(".no-match").is_visible()


def test_quick_connect_palette_opens_a_terminal(page, live_server, crowd):
    user, password, target = crowd
    browser_login(page, live_server, user, password)
    page.keyboard.press("Control+k")
    palette = page.locator("dialog#palette")
    palette.wait_for()
    assert page.evaluate("document.activeElement.id") == "palette-input"
    page.keyboard.type("117")
    options = palette.locator('[role="option"]')
    assert options.count() == 1 and target in options.first.inner_text()
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/devices-palette-desktop.png")
    page.keyboard.press("Enter")
    panel = page.locator(".terminal-panel").nth(0)
    panel.locator(".xterm-rows").get_by_text(re.compile(r"gatehouse-test@.*\$")).first.wait_for()
    assert not palette.is_visible()
    # Inside a terminal, Ctrl+K stays the shell's (kill the line); Ctrl+Shift+K opens the palette.
    page.keyboard.press("Control+k")
    assert not palette.is_visible()
    page.keyboard.press("Control+Shift+K")
    palette.wait_for()
    page.keyboard.type("host-00")
    assert palette.locator('[role="option"]').count() == 10
    page.keyboard.press("ArrowDown")
    assert palette.locator('[aria-selected="true"]').inner_text().startswith("host-001")
    page.keyboard.press("Escape")
    assert not palette.is_visible()


def test_folders_fold_and_stay_folded(page, live_server, crowd):
    user, password, _ = crowd
    browser_login(page, live_server, user, password)
    lab = page.locator('details.folder[data-folder="lab"]')
    assert lab.locator("summary").inner_text().split() == ["lab", "50"]
    lab.locator("summary").click()
    assert lab.get_attribute("open") is None
    page.reload()
    assert page.locator('details.folder[data-folder="lab"]').get_attribute("open") is None
    assert page.locator('details.folder[data-folder="core"]').get_attribute("open") is not None
    page.locator("#device-search").fill("host-002")  # a search opens the folders that hold matches
    assert page.locator('details.folder[data-folder="lab"]').get_attribute("open") is not None
    page.locator("#device-search").fill("")
    assert page.locator('details.folder[data-folder="lab"]').get_attribute("open") is None


def test_favourite_in_the_browser_keeps_the_search(page, live_server, crowd):
    user, password, _ = crowd
    browser_login(page, live_server, user, password)
    page.locator("#device-search").fill("host-005")
    page.locator("#device-list li.device[id]:visible .row-menu").click()  # the star is in the row's menu
    page.locator("#device-list li.device[id]:visible .row-actions .star").click()
    favourites = page.locator('#device-list section.group.pinned[aria-label="Favourites"]')
    favourites.wait_for(state="attached")  # the new panel is in (Recent may have been there before it)
    wait_for(lambda: page.locator("#device-search").input_value() == "host-005")
    wait_for(lambda: page.locator("#device-list li.device[id]:visible").count() == 1)
    page.locator("#device-search").fill("")
    favourites.wait_for(state="visible")
    assert favourites.locator(".open-terminal .name").inner_text() == "host-005"
    favourites.locator(".row-menu").click()
    favourites.locator(".row-actions .star").click()  # unpin again: the module's other tests see no favourite
    page.locator('#device-list section.group.pinned[aria-label="Favourites"]').wait_for(state="detached")


def test_phone_list_fits_the_screen(browser, live_server, crowd):
    user, password, _ = crowd
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        browser_login(page, live_server, user, password)
        page.locator("#device-list li.device[id]").first.wait_for(state="attached")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        if SHOTS:
            page.screenshot(path=f"{SHOTS}/devices-phone.png")
    finally:
        context.close()


def test_a_member_sees_a_shared_device_without_edit_and_a_folder_change_ends_their_terminal(app, auth, client):
    """Moving a device out of a granted folder takes it from the team: the list, and the open terminal."""
    from app.teams.models import Grant, Team, TeamMember

    auth.login()
    assert add_device(client, name="shared-box", folder="core").status_code == 200
    with app.app_context():
        member = User(username="member", is_admin=False)
        member.set_password("member-password-long")
        team = Team(name="ops")
        db.session.add_all([member, team])
        db.session.flush()
        db.session.add_all([TeamMember(team_id=team.id, user_id=member.id),
                            Grant(team_id=team.id, kind="folder", value="core", created_by="admin")])
        device = db.session.scalar(select(Device).filter_by(name="shared-box"))
        db.session.add(TerminalSession(id="11111111-1111-1111-1111-111111111111", user_id=member.id,
                                       device_id=device.id, actor="member", target=device.label, worker="w"))
        db.session.commit()
        device_id = device.id
    other = app.test_client()
    AuthActions(other).login("member", "member-password-long")
    html = other.get("/devices/").get_data(as_text=True)
    assert 'data-device-name="shared-box"' in html and "shared by admin" in html
    assert f'id="edit-device-{device_id}"' not in html and "/delete" not in html
    assert "device-secret-pw" not in html

    page = client.get(f"/devices/{device_id}/edit").get_data(as_text=True)
    reply = client.post(f"/devices/{device_id}", headers={"HX-Request": "true"}, data={
        "csrf_token": csrf_from(page), "name": "shared-box", "host": "10.1.2.3", "port": "22", "username": "ops",
        "auth_type": "password", "password": "", "folder": "private", "tags": ""})
    assert reply.status_code == 200
    with app.app_context():
        row = db.session.get(TerminalSession, "11111111-1111-1111-1111-111111111111")
        assert (row.terminate_requested, row.terminate_reason) == (True, "access_revoked")
        event = db.session.scalars(select(AuditEvent).filter_by(action="device.updated")).all()[-1]
        assert event.details["folder"] == "private" and event.details["sessions_ended"] == 1
    assert 'data-device-name="shared-box"' not in other.get("/devices/").get_data(as_text=True)
