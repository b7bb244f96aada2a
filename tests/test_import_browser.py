"""Importing devices in a real headless Chromium on gunicorn: a 200-host OpenSSH config becomes 200 devices, a CSV
with bad lines names each refused line and Cancel creates nothing, a device without credentials says so when opened;
the import page and the preview are axe-core clean at desktop and phone size in both themes (screenshots into
GATEHOUSE_SHOTS when it is set)."""
import os
import re
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.pages_import import import_preview
from tests.support import browser_login, live_events, server_app, wait_for
from tests.test_accessibility import AXE, AXE_RUN, NAMELESS, SIZES, overflow

SHOTS = os.environ.get("GATEHOUSE_SHOTS")
# axe-core as tests/test_accessibility.py runs it, on the page below the header: the header is the same on every page
# and checked there, with every page.
PAGE_RUN = AXE_RUN.replace("axe.run(document,", "axe.run({exclude: [['.topbar']]},")
# The height the preview needs to show whole: the header and the page box's content.
WHOLE = "document.querySelector('.topbar').offsetHeight + document.querySelector('.import-page').scrollHeight"


@pytest.fixture(scope="module")
def server(module_live_servers):
    """One gunicorn server for the module: its device lists grow by hundreds here."""
    return module_live_servers()


def device_names(server, prefix):
    """Return the names of the devices in the server's database that start with prefix."""
    from sqlalchemy import select

    from app.devices.models import Device
    from app.extensions import db

    with server_app(server).app_context():
        names = db.session.scalars(select(Device.name).where(Device.name.startswith(prefix))).all()
        db.engine.dispose()
    return sorted(names)


def test_a_200_host_config_file_becomes_200_devices(page, server):
    prefix = f"bulk-{uuid.uuid4().hex[:6]}-"
    config = "Host *\n    User ops\n\n" + "".join(
        f"Host {prefix}{i:03}\n    HostName 10.9.{i // 250}.{i % 250 + 1}\n    Port {2200 + i}\n\n" for i in range(200))
    browser_login(page, server)
    page.goto(server.url + "/devices/import")
    page.locator("#import-file").set_input_files({"name": "config", "mimeType": "text/plain",
                                                  "buffer": config.encode()})
    page.get_by_role("button", name="Preview").click()
    counts = page.locator("#import-counts")
    counts.wait_for()
    assert counts.inner_text().split() == ["200", "to", "create", "0", "skipped", "0", "refused"]
    assert page.locator("#create-table tbody tr").count() == 200
    assert device_names(server, prefix) == []  # the preview created nothing
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Create 200 devices").click()
    page.locator("#import-result", has_text="200 devices").wait_for()
    assert len(device_names(server, prefix)) == 200
    page.get_by_role("link", name="Open the device list").click()
    page.wait_for_url(server.url + "/")  # load: the list's buttons are wired by deferred scripts
    listed = page.locator(f'#device-list button.open-terminal[data-device-name^="{prefix}"]')
    wait_for(lambda: listed.count() >= 200)
    assert len(set(listed.evaluate_all("buttons => buttons.map(b => b.dataset.deviceName)"))) == 200
    imported = [e for e in live_events(server, "device.imported") if e.details["created"] == 200]
    assert imported and imported[-1].details["format"] == "ssh"


BAD_CSV = """\
name,host,port,user,folder,tags
{p}good-1,10.0.0.1,22,ops,lab,prod;dc1
=HYPERLINK("http://evil"),10.0.0.2,22,ops,,
{p}shell,10.0.0.3;reboot,22,ops,,
<script>alert(1)</script>,10.0.0.4,22,ops,,
{p}port,10.0.0.5,70000,ops,,
{p}good-2,10.0.0.6,22,ops,lab,
{p}good-1,10.0.0.7,22,ops,,
"""


def test_a_csv_with_bad_lines_names_each_and_cancel_creates_nothing(page, server):
    prefix = f"csv-{uuid.uuid4().hex[:6]}-"
    browser_login(page, server)
    page.goto(server.url + "/devices/import")
    page.locator("#import-text").fill(BAD_CSV.format(p=prefix))
    page.get_by_label("Format").select_option("csv")
    page.get_by_role("button", name="Preview").click()
    page.locator("#import-counts").wait_for()
    assert page.locator("#import-counts").inner_text().split() == ["2", "to", "create", "1", "skipped", "4", "refused"]
    refused = page.locator("#refused-table tbody tr")
    rows = [refused.nth(i).locator("td").all_inner_texts() for i in range(refused.count())]
    assert [(line, reason.split(":")[0].split(",")[0]) for line, _, reason in rows] == [
        ("3", "The name starts with '='"), ("4", "The host holds shell characters (;)"),
        ("5", "Not a valid device name"), ("6", "Port must be between 1 and 65535.")]
    assert rows[2][1] == "<script>alert(1)</script>"  # shown as text
    assert page.evaluate("document.querySelectorAll('main script').length") == 0
    skipped = page.locator("#skipped-table tbody tr td").all_inner_texts()
    assert skipped == ["8", f"{prefix}good-1", "Also on line 2: that one is kept."]
    page.wait_for_load_state("load")
    page.locator("#import-cancel").click()
    page.locator("#import-form").wait_for()
    assert device_names(server, prefix) == []
    assert not [e for e in live_events(server, "device.created") if e.target.startswith(prefix)]


def test_an_imported_device_says_it_has_no_credentials_when_opened(page, server, sshd):
    name = f"bare-{uuid.uuid4().hex[:6]}"
    browser_login(page, server)
    page.goto(server.url + "/devices/import")
    page.locator("#import-text").fill(f"Host {name}\n    HostName {sshd.host}\n    Port {sshd.port}\n"
                                      f"    User {sshd.user}\n")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Create 1 device").click()
    page.get_by_text("They have no credentials yet").wait_for()
    page.get_by_role("link", name="Open the device list").click()
    page.wait_for_url(server.url + "/")  # load: the list's buttons are wired by deferred scripts
    page.locator(f'#device-list button.open-terminal[data-device-name="{name}"]').first.click()
    screen = page.locator(".terminal-panel .xterm-rows")
    screen.get_by_text(re.compile(r"No credentials stored for .*: set them in Edit\.")).first.wait_for()
    failed = wait_for(lambda: [e for e in live_events(server, "session.failed") if e.target.startswith(name)])
    assert failed[-1].details["reason"] == "no_credentials"


def violations(page):
    """Return axe-core's serious and critical violations below the header, one line each."""
    assert PAGE_RUN != AXE_RUN
    return [f"{v['id']} ({v['impact']}): {v['help']}: " + "; ".join(v["nodes"]) for v in page.evaluate(PAGE_RUN)]


@pytest.mark.parametrize("size", ["desktop", "phone"])
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_import_page_and_preview_are_accessible(browser, server, size, theme, tmp_path):
    context = browser.new_context(viewport=SIZES[size], color_scheme=theme)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    try:
        browser_login(page, server)
        page.goto(server.url + "/devices/import")
        page.locator("#import-form").wait_for()
        assert violations(page) == [] and page.evaluate(NAMELESS) == []
        assert size == "desktop" or overflow(page) == []
        page.screenshot(path=str(tmp_path / f"import-form-{size}-{theme}.png"))  # the form itself is no shot of the docs
        import_preview(page, SimpleNamespace(server=server))
        assert page.locator("#import-counts").inner_text().split() == [
            "2", "to", "create", "1", "skipped", "1", "refused"]
        assert violations(page) == [] and page.evaluate(NAMELESS) == []
        assert size == "desktop" or overflow(page) == []
        shot = Path(SHOTS or tmp_path) / f"import-preview-{size}-{theme}.png"
        page.set_viewport_size({**SIZES[size], "height": min(page.evaluate(WHOLE), 2 * SIZES[size]["height"])})
        page.screenshot(path=str(shot), animations="disabled", caret="hide")
        assert shot.stat().st_size > 0
    finally:
        context.close()
