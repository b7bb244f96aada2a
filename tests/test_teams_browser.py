"""Shared access in a real headless Chromium under gunicorn: a team member uses a granted device, never receives its
credential, and loses the device and its open terminal when the grant is revoked."""
import os
import re
import secrets

import pytest
from sqlalchemy import select

from app.devices.models import Device
from app.extensions import db
from tests.support import browser_login, new_user, server_app, wait_for


def put_in_folder(server, device_id, folder):
    """Put a device in a folder in the live server's database (where the device form does not offer one yet)."""
    app = server_app(server)
    with app.app_context():
        device = db.session.get(Device, device_id)
        if device.folder != folder:
            device.folder = folder
            db.session.commit()
        found = db.session.scalar(select(Device.folder).where(Device.id == device_id))
        db.engine.dispose()
    return found


@pytest.fixture
def contexts(browser):
    """Two browser contexts, the admin's and the member's; closed after the test."""
    made = [browser.new_context(viewport={"width": 1280, "height": 800}) for _ in range(2)]
    pages = []
    for context in made:
        page = context.new_page()
        pages.append(page)
    yield pages
    for context in made:
        context.close()


def record_bodies(page):
    """Keep every response body and websocket frame the page receives; return the list they go to."""
    received = []

    def on_response(response):
        try:
            received.append(response.body())
        except Exception:  # a redirect or a body the browser dropped already: nothing reached the page
            pass

    def on_socket(socket):
        socket.on("framereceived", lambda frame: received.append(frame if isinstance(frame, bytes) else frame.encode()))

    page.on("response", on_response)
    page.on("websocket", on_socket)
    return received


def shoot(page, name):
    """Screenshot the teams page at desktop and phone width in both themes when GATEHOUSE_SHOTS names a folder."""
    folder = os.environ.get("GATEHOUSE_SHOTS")
    if not folder:
        return
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width, height in ((1440, 900), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            page.screenshot(path=f"{folder}/{name}-{width}-{scheme}.png", full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 800})


def test_member_uses_a_shared_device_until_the_grant_is_revoked(contexts, live_server, sshd):
    admin, member = contexts
    tag = secrets.token_hex(3)
    team, folder, device_name = f"ops-{tag}", f"core-{tag}", f"shared-{tag}"
    name, password = new_user(live_server)

    device_id = live_server.add_device(live_server.login(), sshd, device_name, folder=folder)
    assert put_in_folder(live_server, device_id, folder) == folder

    browser_login(admin, live_server)
    admin.goto(live_server.url + "/teams/")
    admin.get_by_label("Team name").fill(team)
    admin.get_by_role("button", name="Create team").click()
    card = admin.locator("article.team", has=admin.get_by_role("heading", name=team))
    card.wait_for()
    card.get_by_label("Add member").select_option(label=name)
    card.get_by_role("button", name="Add", exact=True).click()
    card.locator(".chip", has_text=name).wait_for()
    card.get_by_label("Folder or tag").fill(folder)
    card.get_by_role("button", name="Grant").click()
    grant = card.locator(".grant", has_text=folder)
    grant.wait_for()
    assert "1 device" in grant.inner_text()
    shoot(admin, "teams")
    if os.environ.get("GATEHOUSE_SHOTS"):  # a refused name, as the page shows it
        admin.get_by_label("Team name").fill(team.upper())
        admin.get_by_role("button", name="Create team").click()
        admin.get_by_text(f"There is already a team named {team}.").wait_for()
        shoot(admin, "teams-refused")

    bodies = record_bodies(member)
    browser_login(member, live_server, name, password)
    opener = member.locator(f'.open-terminal[data-device-name="{device_name}"]').first
    opener.click()
    screen = member.locator(".terminal-panel .xterm-rows")
    screen.get_by_text(re.compile(r"gatehouse-test@.*\$")).first.wait_for()
    member.keyboard.type("echo shared-$((6*7))")
    member.keyboard.press("Enter")
    screen.get_by_text("shared-42").wait_for()

    grant.get_by_role("button", name="Revoke").click()
    dialog = admin.locator("#confirm-dialog")
    assert team in dialog.inner_text() and folder in dialog.inner_text()
    dialog.get_by_role("button", name="Revoke").click()
    card.get_by_text("No devices shared yet.").wait_for()
    screen.get_by_text("Your access to this device was revoked.").wait_for()

    member.reload()
    member.locator(".device-panel").wait_for()
    wait_for(lambda: member.locator(".device-panel").count() == 1)
    assert opener.count() == 0
    assert any(device_name.encode() in body for body in bodies) and any(b"shared-42" in body for body in bodies)
    assert all(sshd.password.encode() not in body for body in bodies)


def test_the_teams_page_works_from_the_keyboard(contexts, live_server):
    admin = contexts[0]
    team = f"keys-{secrets.token_hex(3)}"
    new_user(live_server)
    browser_login(admin, live_server)
    admin.goto(live_server.url + "/teams/")
    focused = lambda: admin.evaluate("document.activeElement.id")  # noqa: E731

    admin.focus("#name")
    admin.keyboard.type(team)
    admin.keyboard.press("Enter")
    card = admin.locator("article.team", has=admin.get_by_role("heading", name=team))
    card.wait_for()
    tid = card.get_attribute("id").removeprefix("team-")
    wait_for(lambda: focused() == f"team{tid}-user_id")  # on to the next step: adding a member
    admin.keyboard.press("Tab")
    admin.keyboard.press("Enter")
    card.locator(".chip").wait_for()
    wait_for(lambda: focused() == f"team{tid}-user_id")

    admin.keyboard.press("Tab")
    admin.keyboard.press("Tab")
    assert focused() == f"team{tid}-grant-kind"
    admin.keyboard.press("ArrowDown")  # Tag: the name field now suggests tags
    value = card.get_by_label("Folder or tag")
    wait_for(lambda: value.get_attribute("list") == "tag-names")
    admin.keyboard.press("Tab")
    admin.keyboard.type("Web")
    admin.keyboard.press("Enter")
    grant = card.locator(".grant", has_text="web")
    grant.wait_for()
    assert "tag" in grant.inner_text() and "0 devices" in grant.inner_text()
    wait_for(lambda: focused() == f"team{tid}-grant-value")

    revoke = grant.get_by_role("button", name="Revoke")
    revoke.focus()
    admin.keyboard.press("Enter")
    dialog = admin.locator("#confirm-dialog")
    dialog.wait_for()
    assert focused() == "" and admin.evaluate("document.activeElement.className") == "confirm-no"
    admin.keyboard.press("Escape")  # the safe answer: nothing happens
    wait_for(lambda: not dialog.is_visible())
    # Asked again at once: the first question's late close event must not take the new question's answer.
    assert grant.count() == 1 and admin.evaluate("document.activeElement.textContent") == "Revoke"
    admin.keyboard.press("Enter")
    dialog.wait_for()
    admin.keyboard.press("Tab")
    admin.keyboard.press("Enter")
    card.get_by_text("No devices shared yet.").wait_for()
    wait_for(lambda: focused() == f"team{tid}-grant-value")

    card.get_by_role("button", name=f"Delete team {team}").focus()
    admin.keyboard.press("Enter")
    dialog.wait_for()
    assert team in dialog.inner_text()
    admin.keyboard.press("Tab")
    admin.keyboard.press("Enter")
    admin.get_by_text(f"Team {team} deleted.").wait_for()
    assert card.count() == 0
    wait_for(lambda: focused() == "name")


def test_a_grant_names_the_owners_whose_devices_it_covers(contexts, live_server, sshd):
    admin, member = contexts
    tag = secrets.token_hex(3)
    team, folder = f"own-{tag}", f"core-{tag}"
    owner, owner_pw = new_user(live_server)
    planter, planter_pw = new_user(live_server)
    name, password = new_user(live_server)
    live_server.add_device(live_server.login(owner, owner_pw), sshd, f"web-{tag}", folder=folder)

    browser_login(admin, live_server)
    admin.goto(live_server.url + "/teams/")
    admin.get_by_label("Team name").fill(team)
    admin.get_by_role("button", name="Create team").click()
    card = admin.locator("article.team", has=admin.get_by_role("heading", name=team))
    card.wait_for()
    card.get_by_label("Add member").select_option(label=name)
    card.get_by_role("button", name="Add", exact=True).click()
    card.locator(".chip", has_text=name).wait_for()
    card.get_by_label("Folder or tag").fill(folder)  # the owners of the devices there are suggested, with counts
    owners = card.locator("form.grant-form fieldset.owners")
    suggested = owners.get_by_role("checkbox", name=re.compile(re.escape(owner) + r"\s+1 device there"))
    wait_for(lambda: suggested.is_checked())
    assert not owners.get_by_role("checkbox", name=re.compile(re.escape(planter))).is_checked()
    shoot(admin, "teams-owners-suggested")
    card.get_by_role("button", name="Grant").click()
    grant = card.locator(".grant", has_text=folder)
    grant.wait_for()
    assert "1 device" in grant.inner_text() and f"Owners: {owner} and admins" in grant.inner_text()

    # Someone else names a device alike afterwards: it stays out of the grant.
    live_server.add_device(live_server.login(planter, planter_pw), sshd, f"web-{tag}", folder=folder)
    browser_login(member, live_server, name, password)
    assert member.locator(f'.open-terminal[data-device-name="web-{tag}"]').count() == 1
    assert f"shared by {owner}" in member.locator(".device-panel").inner_text()
    shoot(member, "device-list-shared")
    admin.reload()
    grant = admin.locator(".grant", has_text=folder)
    assert "1 device" in grant.inner_text()

    grant.get_by_text(f"Owners: {owner} and admins").click()  # an admin may add an owner on purpose
    grant.get_by_role("checkbox", name=re.compile(re.escape(planter) + r"\s+1 device there")).check()
    shoot(admin, "teams-owners-edit")
    grant.get_by_role("button", name="Save owners").click()
    admin.get_by_text(f"now uses the devices in folder {folder} of").wait_for()
    assert "2 devices" in admin.locator(".grant", has_text=folder).inner_text()
