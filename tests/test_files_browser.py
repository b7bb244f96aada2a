"""The file panel in a real headless Chromium, on a terminal to a real sshd: names stay text, uploads by the picker
and by drag and drop with their progress, rename, delete after a confirmation, the upload limit, a device with file
transfer off; screenshots of the panel at desktop and phone size in both themes."""
import hashlib
import os
import re
import uuid
from pathlib import Path

import pytest

from tests.support import browser_login, live_events, wait_for
from tests.test_accessibility import AXE, NAMELESS, violations
from tests.test_files import sftp_sshd, workdir  # noqa: F401  (fixtures: the sshd with sftp, a fresh folder)

PROMPT = re.compile(r"gatehouse-test@.*\$")
SHOTS = os.environ.get("GATEHOUSE_SHOTS")
HOSTILE = 'x <img src=x onerror="window.__xss=1"> ü <script>window.__xss=2<\\script>.txt'


@pytest.fixture(scope="module")
def server(module_live_servers):
    """One gunicorn server for the module, with a 1 MB upload limit."""
    return module_live_servers(SFTP_MAX_UPLOAD_MB="1")


def open_files(page, server, sshd, folder, **device_fields):
    """Add a device, open a terminal to it, open the file panel and show folder; return the panel."""
    name = f"files-{uuid.uuid4().hex[:6]}"
    server.add_device(server.login(), sshd, name, **device_fields)
    browser_login(page, server)
    opener = page.locator(f'button.open-terminal[data-device-name="{name}"]').first
    if opener.is_hidden():  # a phone: the device list is a drawer
        page.click("#sidebar-toggle")
    opener.click()
    page.locator(".terminal-panel:not([hidden]) .xterm-rows").get_by_text(PROMPT).first.wait_for()
    if page.locator("#files-panel").is_hidden():
        page.click("#files-toggle")
    panel = page.locator("#files-panel")
    if folder is not None:
        panel.locator(".files-path input").fill(str(folder))
        panel.locator(".files-path input").press("Enter")
        panel.locator(f'.files-list[data-path="{folder}"]').wait_for(state="attached")
    return panel


def entry(panel, name):
    """Return the row of the listed entry called name (matched as text)."""
    return panel.locator(".files-entry").filter(has=panel.page.get_by_text(name, exact=True))


def test_a_hostile_name_is_text_uploaded_renamed_and_deleted_after_asking(page, server, sftp_sshd, workdir):
    panel = open_files(page, server, sftp_sshd, workdir)
    panel.locator("input[type=file]").set_input_files([{"name": HOSTILE, "mimeType": "text/plain", "buffer": b"hi"}])
    entry(panel, HOSTILE).wait_for()
    assert (workdir / HOSTILE).read_bytes() == b"hi"
    assert panel.locator(".files-upload-row .files-upload-state").inner_text() == "uploaded"
    assert page.evaluate("window.__xss") is None and panel.locator(".files-list img, .files-list script").count() == 0

    entry(panel, HOSTILE).locator(".files-rename").click()
    field = panel.locator(".files-name-form input")
    field.fill("renamed <b>bold.txt")
    field.press("Enter")
    entry(panel, "renamed <b>bold.txt").wait_for()
    assert [p.name for p in workdir.iterdir()] == ["renamed <b>bold.txt"]

    entry(panel, "renamed <b>bold.txt").locator(".files-delete").click()
    dialog = page.locator("#confirm-dialog[open]")
    assert dialog.locator(".confirm-question").inner_text() == \
        "Delete renamed <b>bold.txt on the device? This cannot be undone."
    dialog.locator(".confirm-no").click()  # Cancel keeps it
    page.locator("#confirm-dialog:not([open])").wait_for(state="attached")
    assert [p.name for p in workdir.iterdir()] == ["renamed <b>bold.txt"]
    entry(panel, "renamed <b>bold.txt").locator(".files-delete").click()
    page.locator("#confirm-dialog[open] .confirm-yes").click()
    panel.get_by_text("This folder is empty.").wait_for()
    assert list(workdir.iterdir()) == []
    assert page.evaluate("window.__xss") is None

    uploaded = [e for e in live_events(server, "file.uploaded") if e.details["path"] == str(workdir / HOSTILE)]
    assert uploaded[-1].details["sha256"] == hashlib.sha256(b"hi").hexdigest()
    assert wait_for(lambda: [e for e in live_events(server, "file.deleted")
                             if e.details["path"] == str(workdir / "renamed <b>bold.txt")])


def test_files_dropped_on_the_panel_upload_with_a_progress_bar_each(page, server, sftp_sshd, workdir):
    panel = open_files(page, server, sftp_sshd, workdir)
    page.evaluate("""() => {
      const data = new DataTransfer();
      data.items.add(new File([new Uint8Array(300000).fill(7)], "one.bin"));
      data.items.add(new File(["two"], "two.txt"));
      const panel = document.getElementById("files-panel");
      panel.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
      panel.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
    }""")
    entry(panel, "two.txt").wait_for()
    entry(panel, "one.bin").wait_for()
    rows = panel.locator(".files-upload-row")
    assert rows.count() == 2 and rows.locator("progress").count() == 2
    assert rows.locator(".files-upload-state").all_inner_texts() == ["uploaded", "uploaded"]
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/files-panel-uploads-1280x800.png")
    assert (workdir / "one.bin").read_bytes() == bytes([7]) * 300000
    assert "293 KB" in entry(panel, "one.bin").inner_text()  # size, type and time shown
    assert "file" in entry(panel, "one.bin").locator(".files-type").inner_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d [+-]\d\d:\d\d",
                        entry(panel, "one.bin").locator("time").inner_text())
    panel.locator(".files-up").click()  # ".." goes up; the folder's name opens it again
    panel.locator(f'.files-list[data-path="{workdir.parent}"]').wait_for(state="attached")
    entry(panel, workdir.name).locator(".files-name").click()
    panel.locator(f'.files-list[data-path="{workdir}"]').wait_for(state="attached")


def test_a_file_over_the_limit_is_not_sent_and_the_panel_says_why(page, server, sftp_sshd, workdir):
    panel = open_files(page, server, sftp_sshd, workdir)
    panel.locator("input[type=file]").set_input_files(
        [{"name": "big.bin", "mimeType": "application/octet-stream", "buffer": b"\0" * (2 * 1024 * 1024)}])
    state = panel.locator(".files-upload-row.is-error .files-upload-state")
    state.wait_for()
    assert state.inner_text() == "Larger than the upload limit of 1 MB; not sent."
    assert list(workdir.iterdir()) == []


def test_errors_show_as_sentences(page, server, sftp_sshd, workdir):
    panel = open_files(page, server, sftp_sshd, workdir)
    panel.locator(".files-path input").fill(str(workdir / "nowhere"))
    panel.locator(".files-path input").press("Enter")
    message = panel.locator(".files-message.is-error")
    message.wait_for()
    assert message.inner_text() == f"There is no file or folder {workdir / 'nowhere'} on the device."
    panel.locator(".files-refresh").click()  # still usable: back to a folder that exists
    wait_for(lambda: panel.get_attribute("aria-busy") is None)
    panel.locator(".files-path input").fill(str(workdir))
    panel.locator(".files-path input").press("Enter")
    panel.get_by_text("This folder is empty.").wait_for()
    panel.locator(".files-new-folder").click()
    panel.locator(".files-name-form input").fill("..")
    panel.locator(".files-name-form input").press("Enter")
    # Waited for by its words: the error of the earlier path may still be on show for a moment.
    message.filter(has_text='A name may not be empty, "." or "..", nor contain "/".').wait_for()
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/files-panel-error-1280x800.png")


def test_a_device_with_file_transfer_off_says_so(page, server, sftp_sshd):
    panel = open_files(page, server, sftp_sshd, None, allow_file_transfer="", file_transfer_shown="1")
    message = panel.locator(".files-message.is-error")
    message.wait_for()
    assert message.inner_text().startswith("File transfer is off for this device")
    assert panel.locator(".files-upload").is_disabled()


@pytest.mark.parametrize("size", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_panel_looks_right(browser, server, sftp_sshd, workdir, size, scheme, tmp_path):
    for name, data in (("notes.txt", b"n" * 1234), ("report 2026 <final>.pdf", b"p" * 250000)):
        (workdir / name).write_bytes(data)
    (workdir / "logs").mkdir()
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, color_scheme=scheme)
    context.add_init_script(path=str(AXE))  # axe-core, as tests/test_accessibility.py runs it
    page = context.new_page()
    try:
        panel = open_files(page, server, sftp_sshd, workdir)
        entry(panel, "notes.txt").wait_for()
        box = panel.bounding_box()
        assert box["width"] >= 250 and box["x"] + box["width"] <= size[0] + 1
        names = panel.locator(".files-name").all_inner_texts()
        assert names == ["logs", "notes.txt", "report 2026 <final>.pdf"]
        assert violations(page) == []
        assert page.evaluate(NAMELESS) == []  # icon-only controls (.., ×, ↻) carry a name
        shot = Path(SHOTS or tmp_path) / f"files-panel-{size[0]}x{size[1]}-{scheme}.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 0
    finally:
        context.close()


def test_the_device_form_shows_the_file_transfer_box_to_admins_alone(browser, page, server, sftp_sshd):
    from tests.support import new_user

    name = f"form-{uuid.uuid4().hex[:6]}"
    device_id = server.add_device(server.login(), sftp_sshd, name)
    browser_login(page, server)
    page.click(f"#device-menu-{device_id}")  # Edit is in the row's menu
    page.click(f"#edit-device-{device_id}")
    box = page.locator("dialog.drawer[open] input[name=allow_file_transfer]")
    assert box.is_checked()
    assert page.get_by_label("Allow file transfer (SFTP)").is_visible()
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/files-device-form-1280x800.png")
    box.uncheck()
    page.locator("dialog.drawer[open] button[type=submit]").click()
    page.get_by_text(f"Device {name} saved.").wait_for()
    updated = wait_for(lambda: [e for e in live_events(server, "device.updated") if e.target.startswith(name)])
    assert updated[-1].details["allow_file_transfer"] is False

    user, password = new_user(server)
    own = server.add_device(server.login(user, password), sftp_sshd, f"own-{uuid.uuid4().hex[:6]}")
    other = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        mine = other.new_page()
        browser_login(mine, server, user, password)
        mine.click(f"#device-menu-{own}")
        mine.click(f"#edit-device-{own}")
        drawer = mine.locator("dialog.drawer[open]")
        drawer.get_by_text("File transfer (SFTP): allowed. Only an admin can change this.").wait_for()
        assert mine.locator("input[name=allow_file_transfer]").count() == 0
    finally:
        other.close()
