"""Dialogs in a real headless Chromium at desktop and phone sizes: the device drawer opens in view and takes
focus, and every destructive action asks once, naming what it acts on, before anything happens."""
import os
import secrets

import pytest
from sqlalchemy import select

from app.devices.models import HostKey
from app.extensions import db
from tests.support import (browser_login, csrf_from, free_port, live_events, new_user, open_terminal,
                           server_app, wait_for)

SIZES = {"desktop": (1440, 900), "phone": (390, 844)}


@pytest.fixture(params=list(SIZES))
def size(request):
    return request.param


@pytest.fixture
def page_at(browser, size):
    """A fresh page at the parametrised size."""
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    yield page
    context.close()


def shot(page, name):
    """Save a screenshot when GATEHOUSE_SHOTS names a folder."""
    folder = os.environ.get("GATEHOUSE_SHOTS")
    if folder:
        page.screenshot(path=os.path.join(folder, f"{name}.png"))


def add_device(server, http, name, host="127.0.0.1", port=22, username="ops", password="a-device-password"):
    """Create a device through the real form."""
    token = csrf_from(http.get(server.url + "/", timeout=10).text)
    response = http.post(server.url + "/devices/", data={"name": name, "host": host, "port": port, "username": username,
                                                         "auth_type": "password", "password": password,
                                                         "csrf_token": token}, timeout=30)
    assert response.status_code == 200, response.text[:500]


def device_ids(server, owner_http):
    """Return {name: id} of a user's devices, read from their panel."""
    import re

    panel = owner_http.get(server.url + "/devices/", timeout=10).text
    return {name: int(i) for i, name in
            re.findall(r'id="device-(\d+)"[^>]*>\s*<button[^>]*data-device-name="([^"]+)"', panel)}


def show_devices(page):
    """On a phone the device list is a drawer: open it (on a desktop it is already in view)."""
    toggle = page.locator("#sidebar-toggle")
    if page.viewport_size["width"] < 700 and toggle.get_attribute("aria-expanded") != "true":
        toggle.click()
        page.locator("#add-device").wait_for()


@pytest.fixture(scope="module")
def owner(live_server):
    """A user with 50 devices (dev-01 … dev-50)."""
    name, password = new_user(live_server)
    http = live_server.login(name, password)
    for number in range(1, 51):
        add_device(live_server, http, f"dev-{number:02}")
    return name, password, device_ids(live_server, http)


def focused_id(page):
    return page.evaluate("document.activeElement && document.activeElement.id")


def wait_focus(page, element_id):
    """Wait until the element with this id has the focus."""
    wait_for(lambda: focused_id(page) == element_id)


def assert_in_view(page, locator):
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    box = locator.bounding_box()
    assert box and box["x"] >= 0 and box["y"] >= 0, box
    assert box["x"] + box["width"] <= width + 0.5 and box["y"] + box["height"] <= height + 0.5, (box, width, height)


def assert_not_wider_than_viewport(page):
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width, page.url


def test_drawer_opens_in_view_takes_focus_and_gives_it_back(page_at, live_server, owner, size):
    page = page_at
    name, password, ids = owner
    browser_login(page, live_server, name, password)
    show_devices(page)
    menu = page.locator(f"#device-menu-{ids['dev-48']}")  # Edit is in the row's menu
    menu.scroll_into_view_if_needed()
    menu.click()
    edit = page.locator(f"#edit-device-{ids['dev-48']}")
    edit.click()
    drawer = page.locator("dialog#device-drawer[open]")
    drawer.wait_for()
    assert_in_view(page, drawer)
    wait_focus(page, "name")
    assert page.locator("#name").input_value() == "dev-48"
    shot(page, f"dialogs-drawer-{size}")
    page.keyboard.press("Escape")
    drawer.wait_for(state="detached")
    wait_focus(page, f"device-menu-{ids['dev-48']}")  # back on the row's menu button

    menu.click()  # again, and save: the list updates, the drawer goes, the focus comes back
    edit.click()
    drawer.wait_for()
    new_host = "127.0.0.2" if size == "desktop" else "127.0.0.3"
    page.fill("#host", new_host)
    page.fill("#port", "")
    page.click("#device-form button[type=submit]")
    drawer.get_by_text("Not a valid integer value.").wait_for()  # the error stays in the drawer, focus on it
    wait_focus(page, "port")
    page.fill("#port", "2222")
    page.click("#device-form button[type=submit]")
    page.get_by_text("Device dev-48 saved.").wait_for()
    drawer.wait_for(state="detached")
    assert f"@{new_host}:2222" in page.locator(f"#device-{ids['dev-48']} .addr").inner_text()
    wait_focus(page, f"device-menu-{ids['dev-48']}")

    page.click("#add-device")
    drawer.wait_for()
    assert_in_view(page, drawer)
    assert focused_id(page) == "name" and page.locator("#name").input_value() == ""
    page.locator("#device-drawer [data-drawer-close]").click()
    drawer.wait_for(state="detached")
    assert focused_id(page) == "add-device"
    assert_not_wider_than_viewport(page)


def ask(page, button, names):
    """Press a destructive button; check the one dialog names the object and offers Cancel first."""
    page.wait_for_load_state("load")  # the confirmation is wired by a deferred script: a click before it submits
    button.click()
    dialog = page.locator("#confirm-dialog[open]")
    dialog.wait_for()
    assert names in dialog.locator(".confirm-question").inner_text()
    assert page.evaluate("document.activeElement.classList.contains('confirm-no')")
    return dialog


def cancel(page, dialog, how):
    """Cancel the open question by its button or by Esc."""
    if how == "escape":
        page.keyboard.press("Escape")
    else:
        dialog.locator(".confirm-no").click()
    dialog.wait_for(state="hidden")


def put_host_key(server, port):
    """Store a host key for 127.0.0.1:port in the live server's database; return its fingerprint."""
    app = server_app(server)
    fingerprint = "SHA256:" + secrets.token_urlsafe(32)[:43]
    with app.app_context():
        db.session.add(HostKey(host="127.0.0.1", port=port, key_type="ssh-ed25519", key_base64="AAAAC3NzaC1lZDI1NTE5",
                               fingerprint=fingerprint, trusted_by="admin"))
        db.session.commit()
        db.engine.dispose()
    return fingerprint


def host_key_stored(server, port):
    app = server_app(server)
    with app.app_context():
        found = db.session.scalar(select(HostKey.id).filter_by(host="127.0.0.1", port=port))
        db.engine.dispose()
    return found is not None


def test_every_destructive_action_needs_its_confirmation(page_at, live_server, sshd, size):
    page = page_at
    admin = live_server.login()
    doomed = f"doomed-{size}"
    add_device(live_server, admin, doomed)
    victim, _ = new_user(live_server)
    worker, worker_password = new_user(live_server)
    worker_http = live_server.login(worker, worker_password)
    add_device(live_server, worker_http, "worked", host=sshd.host, port=sshd.port, username=sshd.user,
               password=sshd.password)
    key_port = free_port()
    put_host_key(live_server, key_port)
    browser_login(page, live_server)
    show_devices(page)

    # Delete a device, from its row's menu: Cancel keeps it, Delete deletes it.
    row = page.locator(f'#device-list li[id]:has([data-device-name="{doomed}"])')
    button = row.locator(".row-actions [hx-confirm]")
    page.wait_for_load_state("load")
    row.locator(".row-menu").click()
    dialog = ask(page, button, f"Delete device {doomed} (127.0.0.1:22)?")
    shot(page, f"dialogs-confirm-{size}")
    cancel(page, dialog, "button")
    assert f'data-device-name="{doomed}"' in admin.get(live_server.url + "/devices/", timeout=10).text
    wait_focus(page, row.locator(".row-menu").get_attribute("id"))  # the focus is back on the row's menu button
    page.keyboard.press("Enter")
    ask(page, button, doomed).locator(".confirm-yes").click()
    page.get_by_text(f"Device {doomed} (127.0.0.1:22) deleted.").wait_for()
    assert f'data-device-name="{doomed}"' not in admin.get(live_server.url + "/devices/", timeout=10).text

    # Disable, then delete a user.
    page.goto(live_server.url + "/users/")
    row = page.locator("tr", has_text=victim)
    dialog = ask(page, row.get_by_role("button", name="Disable"), f"Disable user {victim}?")
    cancel(page, dialog, "escape")
    assert row.locator("td").nth(2).inner_text() == "active"
    ask(page, row.get_by_role("button", name="Disable"), victim).locator(".confirm-yes").click()
    page.locator("tr", has_text=victim).locator("td:nth-child(3)", has_text="disabled").wait_for()
    row = page.locator("tr", has_text=victim)
    dialog = ask(page, row.get_by_role("button", name="Delete"), f"Delete user {victim}")
    cancel(page, dialog, "button")
    assert page.locator("tr", has_text=victim).count() == 1
    ask(page, row.get_by_role("button", name="Delete"), victim).locator(".confirm-yes").click()
    page.get_by_text(f"User {victim} deleted.").wait_for()
    assert page.locator("tr", has_text=victim).count() == 0
    assert_not_wider_than_viewport(page)

    # Forget a host key.
    page.goto(live_server.url + "/terminals/hostkeys")
    row = page.locator("tr", has_text=f"127.0.0.1:{key_port}")
    dialog = ask(page, row.get_by_role("button", name="Forget"), f"Forget the host key of 127.0.0.1:{key_port}")
    cancel(page, dialog, "escape")
    assert host_key_stored(live_server, key_port)
    ask(page, row.get_by_role("button", name="Forget"), f"127.0.0.1:{key_port}").locator(".confirm-yes").click()
    page.get_by_text(f"Forgot the host key of 127.0.0.1:{key_port}.").wait_for()
    assert not host_key_stored(live_server, key_port)
    assert_not_wider_than_viewport(page)

    # Terminate someone's terminal session, from the list of open ones in the audit viewer.
    ws = open_terminal(live_server.ws_url + f"/terminals/{device_ids(live_server, worker_http)['worked']}/ws",
                       worker_http, live_server.url)
    try:
        page.goto(live_server.url + "/audit/")
        row = page.locator(".live-sessions tr", has_text=worker)
        dialog = ask(page, row.get_by_role("button", name="Terminate"), f"Terminate the session of {worker} with worked")
        shot(page, f"dialogs-confirm-terminate-{size}")
        cancel(page, dialog, "button")
        assert ws.connected and not [e for e in live_events(live_server, "session.terminated") if e.target.startswith("worked")
                                     and worker in e.message]
        ask(page, row.get_by_role("button", name="Terminate"), worker).locator(".confirm-yes").click()
        page.locator(".live-sessions tr", has_text=worker).wait_for(state="detached")
        wait_for(lambda: not ws.connected)
    finally:
        if ws.connected:
            ws.close()
    assert_not_wider_than_viewport(page)


def test_generated_public_key_has_a_copy_button(browser, live_server, owner):
    name, password, _ = owner
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    try:
        browser_login(page, live_server, name, password)
        page.click("#add-device")
        page.fill("#name", "keyed")
        page.fill("#host", "127.0.0.1")
        page.fill("#username", "ops")
        page.select_option("#auth_type", "generate")
        page.click("#device-form button[type=submit]")
        shown = page.locator("#new-public-key textarea")
        shown.wait_for()
        page.get_by_role("button", name="Copy public key").click()
        page.locator("#new-public-key .copy-status", has_text="Copied").wait_for()
        copied = page.evaluate("() => navigator.clipboard.readText()")
        assert copied == shown.input_value().strip() and copied.startswith("ssh-ed25519 ")
    finally:
        context.close()


def test_connection_test_answers_in_the_drawer(page_at, live_server, sshd, owner, size):
    page = page_at
    name, password, _ = owner
    browser_login(page, live_server, name, password)
    show_devices(page)
    page.click("#add-device")
    page.fill("#name", f"probe-{size}")
    page.fill("#host", sshd.host)
    page.fill("#port", str(sshd.port))
    page.fill("#username", sshd.user)
    page.fill("#password", "not-the-password-2")
    page.click("#device-drawer button.test-connection")
    result = page.locator("#device-drawer #test-result")
    result.get_by_text("The authentication step failed.").wait_for()
    page.fill("#password", sshd.password)
    page.click("#device-drawer button.test-connection")
    result.get_by_text("All steps passed.").wait_for()
    assert sshd.fingerprint() in result.inner_text()  # new, or stored by a terminal opened earlier in the run
    shot(page, f"dialogs-test-connection-{size}")
    assert_in_view(page, page.locator("dialog#device-drawer[open]"))
