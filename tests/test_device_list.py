"""The device list at two hundred devices, in a real headless Chromium on a live server: rows of one line whose
names and tag chips never spill, a menu of actions per row that the keyboard opens and walks, Delete that asks
first (from the menu and from the Edit drawer), a key device's public key in its Edit drawer, and a sidebar that
widens by drag or keyboard and remembers it."""
import pytest
from sqlalchemy import select

from app.auth.models import User
from app.devices.models import AUTH_KEY, Device, Favourite
from app.extensions import db
from tests.fleet import add_fleet
from tests.support import browser_login, new_user, server_app, wait_for
from tests.test_accessibility import AXE, violations

DESKTOP = {"width": 1440, "height": 900}

# Every problem of the rows' layout, one line each: a row of another height, a name or a chip that reaches past its
# box or is cut without the full name in the tooltip, a "+N" that does not count the chips left out.
ROW_PROBLEMS = """() => {
  const problems = [];
  const rows = [...document.querySelectorAll('#device-list li.device[id]')];
  const heights = new Set(rows.map(r => Math.round(r.getBoundingClientRect().height)));
  if (heights.size !== 1) problems.push('row heights ' + [...heights].join(', '));
  for (const row of rows) {
    const button = row.querySelector('.open-terminal'), box = button.getBoundingClientRect();
    const name = row.querySelector('.name'), at = name.getBoundingClientRect(), full = button.dataset.deviceName;
    if (at.right > box.right + 0.5 || at.bottom > box.bottom + 0.5) problems.push(full + ': the name spills');
    if (!button.title.startsWith(full + ' ') && button.title.split('\\n')[0] !== full) problems.push(full + ': no tooltip');
    const cut = name.scrollWidth > name.clientWidth;
    if (cut && getComputedStyle(name).textOverflow !== 'ellipsis') problems.push(full + ': the name is cut');
    const tags = row.querySelector('.tags');
    if (!tags) continue;
    const room = tags.getBoundingClientRect(), chips = [...tags.children];
    const shown = chips.filter(c => !c.classList.contains('over'));
    for (const chip of shown) {
      const c = chip.getBoundingClientRect();
      if (c.right > room.right + 0.5 || c.top > room.top + 1 || chip.scrollWidth > chip.clientWidth)
        problems.push(full + ': chip ' + chip.textContent + ' is cut');
    }
    const more = row.querySelector('.more'), hidden = chips.length - shown.length;
    if ((more.hidden ? 0 : Number(more.textContent.slice(1))) !== hidden) problems.push(full + ': +N is not ' + hidden);
    const listed = button.title.split('\\n').find(l => l.startsWith('tags: ')) || '';
    if (listed !== 'tags: ' + chips.map(c => c.textContent).join(', ')) problems.push(full + ': tags not in the tooltip');
  }
  return problems;
}"""


@pytest.fixture(scope="module")
def fleet(live_server):
    """A user who owns two hundred devices; return their name, password and the devices' names."""
    name, password = new_user(live_server)
    names = add_fleet(server_app(live_server), name)
    return name, password, names


@pytest.fixture
def desk(browser, live_server, fleet):
    """A desktop page with axe-core loaded, logged in as the fleet's owner."""
    context = browser.new_context(viewport=DESKTOP)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    browser_login(page, live_server, *fleet[:2])
    page.wait_for_load_state("load")
    yield page
    context.close()


def devices_of(server, username):
    """Return {name: device} of a user's devices, read from the server's database."""
    with server_app(server).app_context():
        owner = db.session.scalar(select(User).filter_by(username=username))
        found = {d.name: d for d in db.session.scalars(select(Device).where(Device.owner_id == owner.id))}
        for device in found.values():
            db.session.expunge(device)
        db.engine.dispose()
    return found


def focused(page):
    return page.evaluate("document.activeElement && document.activeElement.id")


def focused_text(page):
    return page.evaluate("document.activeElement && document.activeElement.textContent.trim()")


def assert_rows_clean(page):
    """Wait until the rows are laid out ("+N" is counted once they are); fail naming every problem left."""
    try:
        wait_for(lambda: not page.evaluate(ROW_PROBLEMS))
    except AssertionError:
        raise AssertionError("rows that do not fit:\n  " + "\n  ".join(page.evaluate(ROW_PROBLEMS)[:20])) from None


def test_two_hundred_rows_are_one_line_each_and_nothing_spills(desk, fleet):
    page = desk
    rows = page.locator("#device-list li.device[id]")
    assert rows.count() == 200
    assert_rows_clean(page)
    assert page.locator("#device-list .device .more:not([hidden])").count() > 0  # some rows count their extra tags
    assert page.evaluate("document.getElementById('sidebar').scrollWidth <= document.getElementById('sidebar').clientWidth")
    one = page.locator('#device-list li.device[id] .open-terminal[data-device-name="lab-switch-unreachable-03"]')
    title = one.get_attribute("title")
    assert title.startswith("lab-switch-unreachable-03\nadmin@127.12.") and "folder: lab" in title
    assert page.locator("#device-list details.pub, #device-list [id^=public-key-]").count() == 0
    assert page.locator("#device-list .row-actions [role=menuitem]:visible").count() == 0  # no actions repeated
    pinned = page.locator("#device-list .group.pinned")
    assert pinned.count() == 0  # nothing opened or pinned yet; the next test pins one
    page.click("#device-tools")  # the panel head's menu: import and export
    tools = page.locator("#device-tools-menu [role=menuitem]")
    tools.first.wait_for()
    assert [(a.inner_text().strip(), a.get_attribute("href")) for a in tools.all()] == [
        ("Import…", "/devices/import"), ("Export CSV", "/devices/export.csv")]


def test_row_menu_by_keyboard_pins_a_favourite_and_delete_asks(desk, live_server, fleet):
    page = desk
    user, _, names = fleet
    device = devices_of(live_server, user)[names[0]]
    menu_button = page.locator(f"#device-menu-{device.id}")
    assert menu_button.get_attribute("aria-label") == f"Actions for {names[0]}"
    menu_button.focus()
    page.keyboard.press("Enter")
    menu = page.locator(f"#device-actions-{device.id}")
    menu.locator("[role=menuitem]").first.wait_for()
    wait_for(lambda: focused_text(page) == "Add to favourites")
    assert not violations(page), violations(page)
    page.keyboard.press("ArrowDown")
    assert focused(page) == f"edit-device-{device.id}"
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")  # round to the last
    assert focused_text(page) == "Delete"
    page.keyboard.press("Escape")
    menu.wait_for(state="hidden")
    wait_for(lambda: focused(page) == f"device-menu-{device.id}")

    page.keyboard.press("Space")  # Space opens it too; Enter on the first item pins the device
    wait_for(lambda: focused_text(page) == "Add to favourites")
    page.keyboard.press("Enter")
    favourites = page.locator('#device-list section.group.pinned[aria-label="Favourites"]')
    favourites.locator(f'[data-device-name="{names[0]}"]').wait_for()
    wait_for(lambda: focused(page) == f"device-menu-{device.id}")  # the new panel: the focus is where it was
    with server_app(live_server).app_context():
        assert db.session.scalar(select(Favourite).filter_by(device_id=device.id)) is not None
        db.engine.dispose()

    page.keyboard.press("Enter")
    wait_for(lambda: focused_text(page) == "Remove from favourites")
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    dialog = page.locator("#confirm-dialog[open]")
    dialog.wait_for()
    assert f"Delete device {device.label}?" in dialog.locator(".confirm-question").inner_text()
    assert page.evaluate("document.activeElement.classList.contains('confirm-no')")  # Cancel is the default
    page.keyboard.press("Enter")
    dialog.wait_for(state="hidden")
    wait_for(lambda: focused(page) == f"device-menu-{device.id}")
    assert names[0] in devices_of(live_server, user)
    page.keyboard.press("Enter")  # and unpin it again, for the tests after this one
    wait_for(lambda: focused_text(page) == "Remove from favourites")
    page.keyboard.press("Enter")
    favourites.wait_for(state="detached")


def test_the_public_key_is_in_the_edit_drawer_and_delete_there_asks(desk, live_server, fleet):
    page = desk
    user = fleet[0]
    keyed = next(d for d in devices_of(live_server, user).values() if d.auth_type == AUTH_KEY)
    page.locator(f"#device-menu-{keyed.id}").scroll_into_view_if_needed()
    page.click(f"#device-menu-{keyed.id}")
    page.click(f"#edit-device-{keyed.id}")
    drawer = page.locator("dialog#device-drawer[open]")
    key = drawer.locator("#device-public-key")
    key.wait_for()
    assert key.input_value() == keyed.public_key and key.get_attribute("readonly") is not None
    assert drawer.get_by_role("button", name="Copy").is_visible()
    assert not violations(page), violations(page)

    page.wait_for_load_state("load")
    drawer.locator("#delete-device").click()
    dialog = page.locator("#confirm-dialog[open]")
    dialog.wait_for()
    assert f"Delete device {keyed.label}?" in dialog.locator(".confirm-question").inner_text()
    dialog.locator(".confirm-no").click()
    dialog.wait_for(state="hidden")
    assert drawer.is_visible() and keyed.name in devices_of(live_server, user)
    drawer.locator("#delete-device").click()
    dialog.wait_for()
    dialog.locator(".confirm-yes").click()
    page.get_by_text(f"Device {keyed.label} deleted.").wait_for()
    drawer.wait_for(state="detached")
    assert keyed.name not in devices_of(live_server, user)
    wait_for(lambda: focused(page) == "device-search")  # the row is gone: the focus waits in the search


def sidebar_width(page):
    return round(page.locator("#sidebar").bounding_box()["width"])


def test_the_sidebar_widens_by_keyboard_and_by_drag_and_remembers(desk):
    page = desk
    handle = page.locator(".sidebar-handle[role=separator]")
    assert sidebar_width(page) == 320 and handle.get_attribute("aria-valuenow") == "320"
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert sidebar_width(page) == 368 and handle.get_attribute("aria-valuenow") == "368"
    page.reload()
    page.locator(".sidebar-handle").wait_for()
    assert sidebar_width(page) == 368

    box = page.locator(".sidebar-handle").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(560, box["y"] + 220, steps=5)
    page.mouse.up()
    wait_for(lambda: abs(sidebar_width(page) - 560) <= 2)
    page.reload()
    page.locator(".sidebar-handle").wait_for()
    assert abs(sidebar_width(page) - 560) <= 2
    assert_rows_clean(page)  # refitted to the wider list

    box = page.locator(".sidebar-handle").bounding_box()  # past half the window: held at half
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(1400, box["y"] + 200, steps=5)
    page.mouse.up()
    assert sidebar_width(page) == 720
    page.locator(".sidebar-handle").focus()
    page.keyboard.press("Home")
    assert sidebar_width(page) == 240
    page.locator(".sidebar-handle").dblclick()  # back to the usual width, and nothing remembered
    assert sidebar_width(page) == 320
    assert page.evaluate("localStorage.getItem('gatehouse-sidebar-width')") is None
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the list is a drawer, no handle
    wait_for(lambda: not page.locator(".sidebar-handle").is_visible())
