"""Times say which zone they are in, truthfully: Chromium in Europe/Berlin and in America/New_York reads every page
that shows times (the trail, Connected now, summary, review, command search, a session, a watch, users, log-ins,
blocks, host keys, the device list). Every shown time carries its zone, local ones the browser's offset at that
moment (checked against the UTC value beside it); every label that names a zone names that of the values under it."""
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from app.devices.models import OfferedHostKey
from app.extensions import db
from app.terminals.models import TerminalSession
from tests.support import ADMIN_PASSWORD, browser_login
from tests.test_accessibility import SERVER_ENV, live_app, seed

AUDIT_ZONE = "Asia/Tokyo"  # neither browser's: the review's list must name it, not pass for the browser's
BROWSER_ZONES = ("Europe/Berlin", "America/New_York")


def hours_excluding_now():
    """Return AUDIT_USUAL_HOURS that leave the current hour in AUDIT_ZONE outside: today's sessions are listed."""
    hour = datetime.now(ZoneInfo(AUDIT_ZONE)).hour
    return "02-03" if hour in (0, 1, 2, 23) else "00-01"


@pytest.fixture(scope="module")
def demo(module_live_servers, sshd):
    server = module_live_servers(**SERVER_ENV, AUDIT_TIMEZONE=AUDIT_ZONE, AUDIT_USUAL_HOURS=hours_excluding_now())
    demo = None
    try:
        demo = seed(server, sshd)
        app = live_app(server)
        with app.app_context():  # a changed key waiting to be accepted: the host-key pages list it with its time
            offered = OfferedHostKey(host="127.0.0.1", port=2201, key_type="ssh-ed25519", key_base64="AAAAC3Nz",
                                     fingerprint="SHA256:" + "x" * 43, offered_to="maria")
            db.session.add(offered)
            db.session.commit()
            demo.offered_id = offered.id
            assert db.session.get(TerminalSession, demo.session_id).ended_at is not None
            db.engine.dispose()
        yield demo
    finally:
        if demo:
            demo.close()


PAGES = {  # name: (path, what shows the page is ready, times and all)
    "trail and connected now": ("/audit/", ".live-sessions table.connected time"),
    "summary": ("/audit/?tab=summary", "#audit-summary time"),
    "review": ("/audit/?tab=review", ".audit-review [aria-labelledby=rev-late] time"),
    "command search": ("/audit/?command=uptime", ".command-matches table time"),
    "session": ("/sessions/{demo.session_id}", ".replay-side .commands time"),
    "watch": ("/sessions/{demo.live_session_id}/watch", ".watch-head time"),
    "users": ("/users/", "table.users time"),
    "log-ins": ("/account/sessions", "table.logins time"),
    "blocks": ("/users/blocks", "table.blocks time"),
    "host keys": ("/terminals/hostkeys", "table.offered-keys time"),
    "accepting a key": ("/terminals/hostkeys/offered/{demo.offered_id}", ".hostkey-accept time"),
    "device list": ("/", "#device-list time.short"),
}

# What the page shows, once times.js has run: each visible <time>, the visible text (terminal screens and code
# left out), and every label (headings, table heads, terms, form labels, hints, phone card labels).
READ = """() => {
  const seen = e => !!e.getClientRects().length;
  const times = [...document.querySelectorAll('time[datetime]')].filter(seen).map(t => ({
    utc: t.getAttribute('datetime'), text: t.textContent.trim(), title: t.title, short: t.classList.contains('short'),
    zone: t.dataset.zone || null}));
  const skip = 'script, style, code, .xterm, .replay-screen, .watch-screen, [hidden]';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let text = '';
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.parentElement.closest(skip) && seen(n.parentElement)) text += n.textContent.replace(/\\s+/g, ' ');
  }
  const labels = [...document.querySelectorAll('th, dt, label, legend, h1, h2, h3, caption, .hint, .zone')]
    .filter(seen).map(e => e.innerText.trim());
  document.querySelectorAll('[data-label]').forEach(e => { if (seen(e)) labels.push(e.dataset.label); });
  return {times, text, labels};
}"""
# times.js has run: every time that starts with a digit (the server's UTC text) has been read.
DONE = """() => [...document.querySelectorAll('time[datetime]')]
  .every(t => t.dataset.utc || t.dataset.zone || !/^\\d/.test(t.textContent.trim()))"""

LOCAL = re.compile(r"(?:(\d{4}-\d\d-\d\d) )?(\d\d:\d\d(?::\d\d)?) ([+-]\d\d:\d\d)")
AGO = re.compile(r"just now|\d+ min ago|\d+ h ago|\d{4}-\d\d-\d\d")
IN_ZONE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (\d{4}-\d\d-\d\d \d\d:\d\d) ([+-]\d\d:\d\d) (\S+)")
# A date with a time, or a time of day alone, in any text; what follows it must say its zone.
MOMENT = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?|(?<![\d:.-])\d\d:\d\d:\d\d(?![\d:])")
ZONE_AFTER = re.compile(r"Z|\s?[+-]\d\d:\d\d|\s?UTC\b")
ZONE_WORDS = re.compile(r"\bUTC\b|\bGMT\b|\blocal\b|\b[A-Z][a-z]+/[A-Z][A-Za-z_]+")


def offset_text(moment):
    """Return a moment's UTC offset as +HH:MM."""
    minutes = int(moment.utcoffset().total_seconds() // 60)
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def time_problems(shown, zone):
    """Return what is untrue or zone-less about one <time> as shown in a browser in zone."""
    utc = datetime.fromisoformat(shown["utc"].replace("Z", "+00:00"))
    if "UTC" not in shown["title"]:
        return [f"{shown['text']!r}: no UTC value on hover ({shown['title']!r})"]
    if shown["zone"]:  # the review's list, in AUDIT_TIMEZONE and saying so
        local = utc.astimezone(ZoneInfo(shown["zone"]))
        expected = f"{local:%a %Y-%m-%d %H:%M} {offset_text(local)} {shown['zone']}"
        good = shown["text"] == expected and shown["zone"] == AUDIT_ZONE
        return [] if good else [f"{shown['text']!r} != {expected!r}"]
    if shown["short"]:  # the device list's "3 min ago" or a day; the moment with its offset on hover
        good = AGO.fullmatch(shown["text"]) and LOCAL.search(shown["title"])
        return [] if good else [f"short {shown['text']!r} / {shown['title']!r}"]
    match = LOCAL.fullmatch(shown["text"])
    if not match:
        return [f"{shown['text']!r} carries no offset"]
    local = utc.astimezone(ZoneInfo(zone))
    day, clock, offset = match.groups()
    expected = (f"{local:%Y-%m-%d}" if day else None, f"{local:%H:%M:%S}"[:len(clock)], offset_text(local))
    return [] if (day, clock, offset) == expected else [f"{shown['text']!r} is not {shown['utc']} in {zone}"]


def text_problems(text):
    """Return the moments in a page's text that do not say their zone."""
    return [text[max(0, m.start() - 30):m.end() + 12] for m in MOMENT.finditer(text)
            if not ZONE_AFTER.match(text, m.end())]


def label_problems(labels, zone, page_name):
    """Return labels naming a zone that is not that of the values under them."""
    allowed = {zone} | ({AUDIT_ZONE} if page_name == "review" else set())
    return [label for label in labels if ZONE_WORDS.search(label) and not any(z in label for z in allowed)]


@pytest.fixture(scope="module", params=BROWSER_ZONES)
def zoned(request, browser, demo):
    """A logged-in admin's page in a browser whose clock is in one zone."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id=request.param)
    page = context.new_page()
    browser_login(page, demo.server)
    yield request.param, page
    context.close()


@pytest.mark.parametrize("name", PAGES)
def test_every_time_says_its_zone(zoned, demo, name):
    zone, page = zoned
    path, ready = PAGES[name]
    page.goto(demo.server.url + path.format(demo=demo))
    page.locator(ready).first.wait_for()
    page.wait_for_function(DONE)
    shown = page.evaluate(READ)
    assert shown["times"], f"{name}: no time shown"
    problems = [p for t in shown["times"] for p in time_problems(t, zone)]
    problems += [f"zone-less: …{p}…" for p in text_problems(shown["text"])]
    problems += [f"label: {p!r}" for p in label_problems(shown["labels"], zone, name)]
    assert not problems, f"{name} in {zone}:\n  " + "\n  ".join(problems)


def test_the_trail_pickers_name_the_browser_zone(zoned, demo):
    zone, page = zoned
    since = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)  # summer: the offset of that day, not of today
    page.goto(demo.server.url + "/audit/?since=2026-07-01T12:00:00Z")
    picker = page.locator("input.utc-picker").first
    picker.wait_for()
    assert picker.input_value() in {f"{since.astimezone(ZoneInfo(zone)):%Y-%m-%dT%H:%M}" + s for s in ("", ":00")}
    assert page.locator("label .zone").all_inner_texts() == [f"({zone})"] * 2  # From and To
    assert timedelta(0) != datetime.now(ZoneInfo(zone)).utcoffset()  # neither zone is UTC in disguise


NO_SCRIPT_PAGES = ("trail and connected now", "summary", "review", "session", "watch", "users", "log-ins", "blocks",
                   "host keys", "accepting a key", "device list")


def test_without_javascript_every_time_says_utc(browser, demo):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id="Europe/Berlin",
                                  java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(demo.server.url + "/login")
        page.fill("#username", "admin")
        page.fill("#password", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(demo.server.url + "/")
        problems, seen = [], set()
        for name in NO_SCRIPT_PAGES:
            page.goto(demo.server.url + PAGES[name][0].format(demo=demo))
            for shown in page.evaluate(READ)["times"]:
                seen.add(name)
                if not (shown["zone"] or re.search(r"(UTC|\dZ)$", shown["text"])):
                    problems.append(f"{name}: {shown['text']!r}")
        assert not problems, "\n".join(problems)
        assert seen == set(NO_SCRIPT_PAGES)  # each showed times
    finally:
        context.close()
