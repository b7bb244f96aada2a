"""Accessibility in a real headless Chromium, on a server with a realistic team: every page at desktop and phone
sizes in the light and dark themes has no serious or critical axe-core violation, names its icon-only controls
and is no wider than the phone; the keyboard moves the audit viewer's tabs and every focus shows.
docs/screenshots/take.py shoots the same pages (PAGES) on the same data (seed)."""
import re
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyotp
import pytest
from sqlalchemy import select

from app.audit.events import FAILURE, record
from app.auth import totp
from app.auth.accounts import create_user
from app.auth.models import User
from app.devices.models import Device, Favourite, HostKey, OfferedHostKey
from app.extensions import db
from app.teams.models import GRANT_FOLDER, GRANT_TAG, Grant, Team, TeamMember
from tests.fleet import add_fleet
from tests.pages_import import import_preview
from tests.support import (ADMIN_PASSWORD, LiveServer, browser_login, csrf_from, live_events,
                           open_terminal, read_until, server_app, wait_for)

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}
BACKGROUND = {"light": "rgb(245, 246, 248)", "dark": "rgb(15, 20, 27)"}
ZONE = "Europe/Berlin"
USER_PASSWORD = "demo-user-password"
NEWCOMERS = {("desktop", "light"): "lena", ("desktop", "dark"): "omar", ("phone", "light"): "sofia",
             ("phone", "dark"): "tom"}  # one per look: each sets up a second factor once
# Each look is reached one way: the system's colour scheme alone, or the header's switch over the other scheme.
LOOKS = {  # (size, theme): (the system's colour scheme, the switch's choice or None)
    ("desktop", "light"): ("light", None),
    ("desktop", "dark"): ("light", "dark"),
    ("phone", "light"): ("dark", "light"),
    ("phone", "dark"): ("dark", None),
}
SERVER_ENV = {"LOCKOUT_MODE": "lock"}  # a locked account shows on the users and blocks pages


# ---- the data: a team with devices, a recorded session, failed log-ins, a block, teams and grants ------------------

@dataclass
class Demo:
    """A seeded live server and what the pages need to know about it."""

    server: LiveServer
    session_id: str  # a recorded session that has ended
    devices: dict
    live: object  # maria's terminal, open all along (its websocket)
    live_session_id: str

    def close(self):
        """End maria's terminal."""
        if self.live.connected:
            self.live.close()


def live_app(server):
    """Return an app bound to a live server's database and keys."""
    return server_app(server)


def post_login(server, username, password):
    """Try a log-in through the real form from a fresh client; return the response."""
    import requests

    http = requests.Session()
    token = csrf_from(http.get(server.url + "/login", timeout=10).text)
    return http.post(server.url + "/login", data={"username": username, "password": password, "csrf_token": token},
                     allow_redirects=False, timeout=10)


def add_device(server, http, name, host, port, username, password, folder="", tags=""):
    """Create a device through the real form (password None: with a key pair generated there); return its id."""
    data = {"name": name, "host": host, "port": port, "username": username, "auth_type": "password",
            "password": password, "folder": folder, "tags": tags, "csrf_token": server.csrf(http)}
    if password is None:
        data.update(auth_type="generate", key_type="ed25519", password="")
    response = http.post(server.url + "/devices/", data=data, timeout=30)
    assert response.status_code == 200 and f"Device {name} added." in response.text, response.text[:1000]
    return server.device_id(name)


def seed(server, sshd):
    """Fill a live server the way a small team would: users (one with a second factor), devices in folders with
    tags, two teams with grants, a recorded terminal session with output, failed log-ins and a name that waits."""
    admin = server.login()
    devices = {"web-1": add_device(server, admin, "web-1", sshd.host, sshd.port, sshd.user, sshd.password,
                                   folder="production", tags="linux, nginx")}
    for name, port, folder, tags in (("db-primary", 2201, "production", "postgres, linux"),
                                     ("db-replica", 2202, "production", "postgres"),
                                     ("build-runner", 2203, "ci", "linux"),
                                     ("lab-switch", 2204, "", "network")):
        devices[name] = add_device(server, admin, name, "127.0.0.1", port, "ops", "a-device-password", folder, tags)
    devices["deploy-key-box"] = add_device(server, admin, "deploy-key-box", "127.0.0.1", 2205, "deploy", None, "ci")

    app = live_app(server)
    add_fleet(app, "admin")  # the admin's list is two hundred devices long, as an operator's is
    pin_favourites(app, "admin", ("db-primary", "core-sw-01", "db-replica-eu-west-3"))
    with app.app_context():
        users = {}
        people = [("maria", False), ("jonas", True), ("dora", False)] + [(n, False) for n in NEWCOMERS.values()]
        for name, is_admin in people:
            create_user(name, USER_PASSWORD, admin=is_admin, via="console")
            users[name] = db.session.scalar(select(User).filter_by(username=name))
        dora = users["dora"]
        totp.new_secret(dora)
        assert totp.confirm(dora, pyotp.TOTP(totp.secret_of(dora)).now())
        teams = (("Operations", ("maria", "dora"), GRANT_FOLDER, "production"),
                 ("Database admins", ("jonas",), GRANT_TAG, "postgres"))
        for team_name, members, kind, value in teams:
            team = Team(name=team_name)
            db.session.add(team)
            db.session.flush()
            db.session.add_all([TeamMember(team_id=team.id, user_id=users[member].id) for member in members])
            db.session.add(Grant(team_id=team.id, kind=kind, value=value, shares_trail=kind == GRANT_FOLDER,
                                 created_by="admin"))
        db.session.add(HostKey(host="127.0.0.1", port=2201, key_type="ssh-ed25519", key_base64="AAAAC3NzaC1lZDI1NTE5",
                               fingerprint="SHA256:" + secrets.token_urlsafe(32)[:43], trusted_by="jonas"))
        db.session.add(OfferedHostKey(host="127.0.0.1", port=2201, key_type="ssh-ed25519", key_base64="AAAAC3NzaC1l",
                                      fingerprint="SHA256:" + secrets.token_urlsafe(32)[:43], offered_to="maria"))
        db.session.commit()  # before the events: each takes its own connection, and SQLite has one writer
        for team_name, members, kind, value in teams:
            record("team.created", f"team {team_name} created", actor="admin", details={"team": team_name})
            for member in members:
                record("team.member_added", f"{member} added to team {team_name}", actor="admin",
                       details={"team": team_name, "user": member})
            record("access.granted", f"team {team_name} may use the devices of {kind} {value}", actor="admin",
                   details={"team": team_name, kind: value})
        record("hostkey.mismatch", "host key of db-replica (127.0.0.1:2202) changed: connection refused",
               outcome=FAILURE, actor="maria", user_id=users["maria"].id, target="db-replica (127.0.0.1:2202)",
               source_ip="127.0.0.1", details={"fingerprint": "SHA256:" + secrets.token_urlsafe(32)[:43]})
        db.engine.dispose()

    for _ in range(2):  # maria mistypes, then gets in
        assert post_login(server, "maria", "not-her-password").status_code == 401
    maria = server.login("maria", USER_PASSWORD)
    for _ in range(3):  # someone tries a name that does not exist
        post_login(server, "root", "123456")
    for _ in range(5):  # and jonas's account, until it is locked (LOCKOUT_MODE=lock)
        post_login(server, "jonas", "guessed-password")

    ws = open_terminal(server.ws_url + f"/terminals/{devices['web-1']}/ws", admin, server.url)
    try:
        for line, answer in ((b"uname -s; echo uptime-$((40+2))", b"uptime-42"),
                             (b"ls /etc | head -n 5; echo listed-$((6*7))", b"listed-42")):
            ws.send(line + b"\n")  # one at a time, as a person types: the replay shows each with its output
            read_until(ws, answer)
        ws.send(b"exit\n")
        wait_for(lambda: [e for e in live_events(server, "session.ended")])
    finally:
        if ws.connected:  # exit has usually closed it from the other side
            ws.close()
    session_id = live_events(server, "session.ended")[-1].session_id

    # maria works on web-1 (shared with her team by its folder) the whole time: "Connected now", watching
    live = open_terminal(server.ws_url + f"/terminals/{devices['web-1']}/ws", maria, server.url)
    live.send(b"cd /etc && ls | head -n 4; echo busy-$((6*7))\n")
    read_until(live, b"busy-42")
    live_id = [e for e in live_events(server, "session.started") if e.actor == "maria"][-1].session_id
    return Demo(server=server, session_id=session_id, devices=devices, live=live, live_session_id=live_id)


def pin_favourites(app, username, names):
    """Pin some of a user's devices under Favourites."""
    with app.app_context():
        user = db.session.scalar(select(User).filter_by(username=username))
        for device in db.session.scalars(select(Device).where(Device.owner_id == user.id, Device.name.in_(names))):
            db.session.add(Favourite(user_id=user.id, device_id=device.id))
        db.session.commit()
        db.engine.dispose()


# ---- the pages: how to reach each one and what shows it is ready ----------------------------------------------

def wait_processed(page, selector):
    """Wait until htmx has taken over the element (a click before that is a plain navigation)."""
    page.wait_for_function("s => !!(document.querySelector(s) || {})['htmx-internal-data']", arg=selector)


def click_when_ready(page, selector):
    wait_processed(page, selector)
    page.locator(selector).first.click()


def at(path, ready):
    """Open path and wait for the selector that shows the page."""
    def open_page(page, demo):
        page.goto(demo.server.url + path.format(demo=demo))
        page.locator(ready).first.wait_for()
    return open_page


def failed_login(page, demo):
    page.goto(demo.server.url + "/login")
    page.fill("#username", "operator")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    page.locator(".form-messages .flash.error").wait_for()


def code_step(page, demo):
    page.goto(demo.server.url + "/login")
    page.fill("#username", "dora")
    page.fill("#password", USER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/login/code")
    page.locator("#code").wait_for()


def main_page(page, demo):
    """Open the main page with its device list in view (on a phone it is the first screen; with a terminal open, a
    drawer opened by its button), as a new window: a terminal an earlier check left open is not brought back as a tab (this page is the list's)."""
    if page.url.startswith(demo.server.url):
        page.evaluate("sessionStorage.removeItem('gatehouse-window')")
    page.goto(demo.server.url + "/")
    page.locator("#device-panel").wait_for(state="attached")
    if not page.locator("#device-list").is_visible():
        page.click("#sidebar-toggle")
    page.locator("#device-list").wait_for()


def account_menu(page, demo):
    """Open the main page and the header's account menu (on a desktop the header shows its items without one)."""
    main_page(page, demo)
    if page.locator("#account-button").is_visible():
        page.click("#account-button")
        page.locator("#theme-switch").wait_for()


def add_drawer(page, demo):
    main_page(page, demo)
    click_when_ready(page, "#add-device")
    page.locator("dialog#device-drawer[open] #name").wait_for()


def row_menu(name):
    """Open the main page and the menu of one device's row (by the keyboard's Enter on its ⋯ button)."""
    def open_page(page, demo):
        main_page(page, demo)
        page.wait_for_load_state("load")  # the deferred scripts wire the menu and the confirmation
        button = page.locator(f"#device-menu-{demo.devices[name]}")
        button.scroll_into_view_if_needed()
        button.focus()
        page.keyboard.press("Enter")
        page.locator(f"#device-actions-{demo.devices[name]} [role=menuitem]").first.wait_for()
    return open_page


def delete_question(page, demo):
    row_menu("lab-switch")(page, demo)
    click_when_ready(page, f"#device-actions-{demo.devices['lab-switch']} [hx-confirm]")
    page.locator("#confirm-dialog[open]").wait_for()


def edit_drawer(page, demo):
    """The Edit drawer of a key device: its public key to copy, Delete beside Save."""
    row_menu("deploy-key-box")(page, demo)
    click_when_ready(page, f"#edit-device-{demo.devices['deploy-key-box']}")
    page.locator("dialog#device-drawer[open] #device-public-key").wait_for()


def terminal(page, demo):
    main_page(page, demo)
    page.locator('#device-list button.open-terminal[data-device-name="web-1"]').first.click()
    screen = page.locator(".terminal-panel .xterm-rows")
    screen.get_by_text(re.compile(r"gatehouse-test@")).first.wait_for()
    page.keyboard.type("uname -s; echo ready-$((6*7))\n")
    screen.get_by_text(re.compile(r"^ready-42")).first.wait_for()


def audit_dialog(tab=None):
    """Open the audit trail over the main page by its icon; then the tab, if any."""
    def open_page(page, demo):
        at("/", "#audit-icon")(page, demo)
        click_when_ready(page, "#audit-icon")
        page.locator("#audit-dialog[open] #audit-results tr[data-action]").first.wait_for()
        if tab:
            click_when_ready(page, f"#audit-dialog [data-tab={tab}]")
            page.locator(f"#audit-dialog [data-tab={tab}][aria-current]").wait_for()
            page.locator("#audit-dialog " + {"summary": "#audit-summary", "review": ".audit-review"}[tab]).wait_for()
    return open_page


def enrolment(page, demo):
    at("/account/2fa", "#twofactor-settings")(page, demo)
    page.click("#twofactor-settings button.primary")
    page.locator("#enrol #code").wait_for()


def recovery_codes(page, demo):
    """Set up a second factor and confirm it with the app's code: the recovery codes show once."""
    enrolment(page, demo)
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.fill("#code", pyotp.TOTP(secret).now())
    page.click("#enrol button[type=submit]")
    page.locator("#recovery-codes ul.codes li").first.wait_for()


def factor_on(page, demo):
    """The settings of someone whose second factor is on (set up first, when it is not yet)."""
    at("/account/2fa", "#twofactor-settings")(page, demo)
    if not page.locator("#twofactor-settings .state-on").count():
        recovery_codes(page, demo)
        page.click("#codes-done")
    page.locator("#twofactor-settings .state-on").wait_for()


@dataclass
class Page:
    """One page to check and shoot: what it is, how to open it, as whom (admin, nobody, or the look's newcomer),
    whose it is, and whether its screenshot shows the whole length (pages that scroll) or the screen."""

    title: str
    open: object
    who: str = "admin"
    owner: str = "ours"
    whole: bool = False


PAGES = {
    "login": Page("Log-in page", at("/login", "#username"), who="nobody"),
    "login-error": Page("Log-in page after a wrong password", failed_login, who="nobody"),
    "login-code": Page("Second factor asked at log-in", code_step, who="nobody"),
    "devices": Page("Main page: the device list", main_page, owner="devices"),
    "device-drawer": Page("Add device drawer", add_drawer, owner="devices"),
    "device-menu": Page("A device's menu of actions", row_menu("build-runner"), owner="devices"),
    "device-edit": Page("Edit drawer of a key device", edit_drawer, owner="devices"),
    "phone-menu": Page("The account menu of the header (phones)", account_menu, owner="devices"),
    "import-preview": Page("Importing devices: the preview", import_preview, owner="devices", whole=True),
    "confirm": Page("Confirmation before deleting a device", delete_question, owner="devices"),
    "terminal": Page("Main page with a terminal open", terminal, owner="terminals"),
    "audit-events": Page("Audit trail over the main page: events", audit_dialog()),
    "audit-summary": Page("Audit trail: security summary", audit_dialog("summary")),
    "audit-review": Page("Audit trail: review", audit_dialog("review")),
    "audit-page": Page("Audit trail as a page", at("/audit/", "#audit-results tr[data-action]"), whole=True),
    "users": Page("Users", at("/users/", "table.users"), whole=True),
    "blocks": Page("Log-in blocks", at("/users/blocks", "table.blocks")),
    "teams": Page("Teams and shared access", at("/teams/", "main h1"), owner="teams", whole=True),
    "host-keys": Page("Known host keys", at("/terminals/hostkeys", "table.list"), owner="terminals"),
    "host-key-accept": Page("Accepting a changed host key", at("/terminals/hostkeys/offered/1", ".hostkey-accept"),
                            owner="terminals"),
    "logins": Page("Active log-ins", at("/account/sessions", "table.list")),
    "password": Page("Change password", at("/account/password", "#current")),
    "second-factor": Page("Second factor: off", at("/account/2fa", "#twofactor-settings")),
    "second-factor-enrol": Page("Second factor: set up", enrolment, whole=True),
    "recovery-codes": Page("Second factor: recovery codes", recovery_codes, who="newcomer", whole=True),
    "second-factor-on": Page("Second factor: on", factor_on, who="newcomer"),
    "session-replay": Page("Session replay", at("/sessions/{demo.session_id}", ".replay-screen .ap-player"),
                           owner="terminals", whole=True),
    "watch": Page("Watching someone's terminal as it happens", at("/sessions/{demo.live_session_id}/watch",
                                                                  ".watch-screen .xterm-rows"), owner="terminals"),
    "not-found": Page("Page not found", at("/no-such-page", "main h1")),
}


# ---- browser contexts -----------------------------------------------------------------------------------------

def _loopback_only(route):
    """Let the page reach the live server only; anything else is refused before it leaves the machine."""
    if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


def new_context(browser, server, size, theme, axe=True):
    """A context at this size whose pages show this theme (by the system's scheme, or by the header's switch)."""
    scheme, switch = LOOKS[(size, theme)]
    context = browser.new_context(viewport=SIZES[size], color_scheme=scheme, timezone_id=ZONE, device_scale_factor=1)
    context.route("**/*", _loopback_only)
    if axe:
        context.add_init_script(path=str(AXE))  # into every page before its own scripts; the page's CSP does not apply
    page = context.new_page()
    if switch:
        page.goto(server.url + "/login")
        page.select_option("#theme-switch", switch)  # remembered in localStorage for every later page
    return context, page


@pytest.fixture(scope="module")
def demo(module_live_servers, sshd):
    if not AXE.exists():
        pytest.fail("axe-core is missing: run `make app/static/vendor/.installed` (npm ci)")
    server = module_live_servers(**SERVER_ENV)
    demo = None
    try:
        demo = seed(server, sshd)
        yield demo
    finally:
        if demo:
            demo.close()


@pytest.fixture(scope="module")
def pages(browser, demo):
    """One page per person and look (admin, nobody, the look's newcomer), made when first asked for, kept."""
    made = {}

    def page_for(who, size, theme):
        if (who, size, theme) not in made:
            context, page = new_context(browser, demo.server, size, theme)
            if who != "nobody":
                browser_login(page, demo.server, *(("admin", ADMIN_PASSWORD) if who == "admin"
                                            else (NEWCOMERS[(size, theme)], USER_PASSWORD)))
            made[(who, size, theme)] = (context, page)
        return made[(who, size, theme)][1]

    yield page_for
    for context, _ in made.values():
        context.close()


# ---- the checks -----------------------------------------------------------------------------------------------

AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 6).map(n => n.target.join(' ') + ' — '
                                    + (n.failureSummary || '').split('\\n').slice(1, 2).join(' ').trim()),
    more: Math.max(0, v.nodes.length - 6)}));
}"""

# Icon-only controls: links and buttons whose text has no letter or digit must carry a name of their own.
NAMELESS = """() => [...document.querySelectorAll('a[href], button, [role=button], [role=tab]')]
  .filter(e => e.getClientRects().length && !/[\\p{L}\\p{N}]/u.test(e.textContent))
  .filter(e => !((e.getAttribute('aria-label') || '').trim() || e.getAttribute('aria-labelledby')))
  .map(e => e.outerHTML.slice(0, 120))"""


def violations(page):
    """Return axe-core's serious and critical violations on the page, one readable line each."""
    return [f"{v['id']} ({v['impact']}): {v['help']}\n      " + "\n      ".join(v["nodes"])
            + (f"\n      … and {v['more']} more" if v["more"] else "") for v in page.evaluate(AXE_RUN)]


# The last few elements that reach past the viewport's right edge, named by tag, id and classes.
PAST_THE_EDGE = """w => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w + 1)
  .slice(-3).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                      + (typeof e.className === 'string' && e.className ? '.' + e.className.replaceAll(' ', '.') : '')
  )"""
SCROLL_SIZES = "s => { const e = document.querySelector(s); return e && [e.scrollWidth, e.clientWidth]; }"


def overflow(page):
    """Return what is wider than the phone's viewport: the document, or the audit viewer's own scroll box."""
    width = page.viewport_size["width"]
    found = []
    document_width = page.evaluate("document.documentElement.scrollWidth")
    if document_width > width:
        found.append(f"the page is {document_width}px wide, more than {width}px: {page.evaluate(PAST_THE_EDGE, width)}")
    for box in ("#audit-dialog[open] #audit-dialog-body", ".audit-page"):
        sizes = page.evaluate(SCROLL_SIZES, box)
        if sizes and sizes[0] > sizes[1] + 1:
            found.append(f"{box} scrolls sideways: {sizes[0]}px in {sizes[1]}px")
    return found


# Cases that fail on a page someone else is building right now, as {page: {(size, theme), ...}}: they are marked
# xfail (not strict) until that work lands; the failure's message names each violation for them. None at present.
THEIRS = {}


def cases():
    for name, spec in PAGES.items():
        for size, theme in LOOKS:
            marks = []
            if name in THEIRS and (size, theme) in THEIRS[name]:
                marks = [pytest.mark.xfail(strict=False, reason="owned by the device-list/terminal/teams work")]
            yield pytest.param(name, size, theme, marks=marks, id=f"{name}-{size}-{theme}")


@pytest.mark.parametrize("name, size, theme", list(cases()))
def test_page_is_accessible(pages, demo, name, size, theme):
    spec = PAGES[name]
    page = pages(spec.who, size, theme)
    spec.open(page, demo)
    problems = []
    ground = page.evaluate("getComputedStyle(document.body).backgroundColor")
    if ground != BACKGROUND[theme]:
        problems.append(f"the page is not in the {theme} theme: background {ground}")
    problems += violations(page)
    nameless = page.evaluate(NAMELESS)
    if nameless:
        problems.append("icon-only controls without a name: " + "; ".join(nameless))
    if size == "phone":
        problems += overflow(page)
    assert not problems, f"{name} at {size} size, {theme} theme ({page.url}):\n  - " + "\n  - ".join(problems)


# ---- the keyboard ---------------------------------------------------------------------------------------------

def focused(page):
    return page.evaluate("document.activeElement && (document.activeElement.dataset.tab || document.activeElement.id)")


def tab_to(page, check, limit=40):
    """Press Tab until check(page) is true; fail after limit presses."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if check(page):
            return
    raise AssertionError(f"Tab never reached it; the focus is on {focused(page)!r}")


def selected(page):
    return page.evaluate("[...document.querySelectorAll('#audit-dialog [role=tab][aria-selected=true]')]"
                         ".map(t => t.dataset.tab)")


def test_audit_tabs_work_by_keyboard(browser, demo):
    context, page = new_context(browser, demo.server, "desktop", "light", axe=False)
    try:
        browser_login(page, demo.server)
        wait_processed(page, "#audit-icon")
        tab_to(page, lambda p: focused(p) == "audit-icon")
        page.keyboard.press("Enter")
        dialog = page.locator("#audit-dialog[open]")
        dialog.locator("#audit-results tr[data-action]").first.wait_for()
        wait_processed(page, "#audit-dialog [data-tab=summary]")
        assert dialog.locator("[role=tablist] [role=tab]").count() == 3
        tab_to(page, lambda p: p.evaluate("document.activeElement.getAttribute('role')") == "tab")
        assert focused(page) == "events" and selected(page) == ["events"]  # Tab lands on the chosen tab only
        page.keyboard.press("ArrowRight")
        assert focused(page) == "summary" and selected(page) == ["events"]  # arrows move, they do not choose
        page.keyboard.press("Enter")
        dialog.locator("#audit-summary").wait_for()
        wait_for(lambda: focused(page) == "summary" and selected(page) == ["summary"])
        wait_processed(page, "#audit-dialog [data-tab=review]")  # the swapped-in tabs are htmx's (a person is slower)
        page.keyboard.press("ArrowRight")
        assert focused(page) == "review"
        page.keyboard.press("Space")
        dialog.locator(".audit-review").wait_for()
        wait_for(lambda: focused(page) == "review" and selected(page) == ["review"])
        page.keyboard.press("ArrowRight")  # round to the first, and back
        assert focused(page) == "events"
        page.keyboard.press("ArrowLeft")
        assert focused(page) == "review"
        page.keyboard.press("Home")
        assert focused(page) == "events"
        page.keyboard.press("End")
        assert focused(page) == "review"
        page.keyboard.press("Shift+Tab")  # out of the tabs and back in: onto the chosen one
        page.keyboard.press("Tab")
        assert focused(page) == "review"
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
        wait_for(lambda: focused(page) == "audit-icon")  # back where the dialog was opened from

        page.goto(demo.server.url + "/audit/")  # the viewer as a page: the same keys
        page.locator("#audit-results tr[data-action]").first.wait_for()
        page.focus("[data-tab=events]")
        page.keyboard.press("ArrowRight")
        assert focused(page) == "summary"
        page.keyboard.press("Space")
        page.wait_for_url(re.compile(r"tab=summary"))
        page.locator("#audit-summary").wait_for()
    finally:
        context.close()


# The focus of every control the Tab key reaches: an outline or a shadow that contrasts 3:1 with what is behind.
FOCUS_RING = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const style = getComputedStyle(e);
  const rgb = c => (c.match(/[\\d.]+/g) || []).slice(0, 4).map(Number);
  const lum = c => {
    const v = c.slice(0, 3).map(x => x / 255).map(x => x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4);
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
  };
  let behind = e.parentElement, ground = null;  // the ring is drawn around the control, over its parent's ground
  while (behind && !ground) {
    const c = rgb(getComputedStyle(behind).backgroundColor);
    if (c.length === 3 || c[3] > 0) ground = c;
    behind = behind.parentElement;
  }
  ground = ground || [255, 255, 255];
  const ring = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2 ? rgb(style.outlineColor) : null;
  const ratio = ring ? (Math.max(lum(ring), lum(ground)) + 0.05) / (Math.min(lum(ring), lum(ground)) + 0.05) : 0;
  const what = e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
    + (e.dataset.tab ? '[data-tab=' + e.dataset.tab + ']' : '') + ' ' + (e.textContent || e.name || '').trim().slice(0, 30);
  return {what: what, visible: e.matches(':focus-visible'),
          outline: style.outlineStyle + ' ' + style.outlineWidth + ' ' + style.outlineColor,
          shadow: style.boxShadow, ratio: Math.round(ratio * 100) / 100, hidden: !e.getClientRects().length};
}"""


FOCUS_WALKS = {  # page (as in PAGES): Tab presses, enough to pass every control at the top of the page
    "login": 8, "devices": 30, "audit-events": 40, "users": 30, "password": 20,
}
THEIRS_FOCUS = {}  # pages whose focus rings others are building right now (see THEIRS)


def focus_cases():
    for name in FOCUS_WALKS:
        for theme in ("light", "dark"):
            marks = [pytest.mark.xfail(strict=False, reason="owned by the device-list/terminal/teams work")] \
                if name in THEIRS_FOCUS else []
            yield pytest.param(name, theme, marks=marks, id=f"{name}-{theme}")


@pytest.mark.parametrize("name, theme", list(focus_cases()))
def test_focus_shows_on_every_control(pages, demo, name, theme):
    spec = PAGES[name]
    page = pages(spec.who, "desktop", theme)
    spec.open(page, demo)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    weak, seen = [], set()
    for _ in range(FOCUS_WALKS[name]):
        page.keyboard.press("Tab")
        ring = page.evaluate(FOCUS_RING)
        if ring is None or ring["hidden"] or ring["what"] in seen:
            continue
        seen.add(ring["what"])
        if not ring["visible"] or (ring["ratio"] < 3 and ring["shadow"] == "none"):
            weak.append(f"{ring['what']}: outline {ring['outline']}, shadow {ring['shadow']}, contrast {ring['ratio']}")
    assert len(seen) >= 3, f"the Tab key reached only {seen}"
    assert not weak, f"focus that does not show on {name} ({theme}):\n  " + "\n  ".join(weak)
