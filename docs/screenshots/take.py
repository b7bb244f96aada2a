"""Screenshots of every page at desktop (1440x900) and phone (390x844) size, in the light and the dark theme.

    make screenshots        (or, after `make test`'s setup: .venv/bin/python docs/screenshots/take.py [PAGE ...])

Starts the app under gunicorn with demo data (the same pages and data as tests/test_accessibility.py: users, devices
in folders, teams, a locked account, a recorded session and a colleague's open one) and a private OpenSSH sshd on
127.0.0.1 for the terminals, then writes docs/screenshots/<page>-<desktop|phone>-<light|dark>.png and docs/screenshots/README.md. Needs what the
browser tests need: Chromium, OpenSSH's sshd run as root, the npm packages. Only 127.0.0.1 is ever contacted.
"""
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import CHROMIUM, LiveServer, SSHServer  # noqa: E402
from tests.support import browser_login as log_in  # noqa: E402  (the shared log-in through the real page)
from tests.test_accessibility import (LOOKS, NEWCOMERS, PAGES, SERVER_ENV, USER_PASSWORD,  # noqa: E402
                                     new_context, seed)

LONGEST = 2.5  # a whole-page shot stops at this many screen heights (the trail's list goes on for long)
TERMINAL_WORK = "whoami; uname -s; ls /etc | head -n 8; echo shot-$((6*7))"


def terminal_with_output(page):
    """Type a little more into the open terminal, so the shot shows some work."""
    screen = page.locator(".terminal-panel .xterm-rows")
    page.keyboard.type("clear\n")
    page.keyboard.type(TERMINAL_WORK + "\n")
    screen.get_by_text("shot-42").first.wait_for()


# How much taller than the screen the page's content is: the document's own overflow, or that of the box inside it
# that scrolls (the audit page, the replay), whichever is more.
OVERFLOW = """() => Math.max(0, ...[document.scrollingElement, ...document.querySelectorAll('main, main *')]
    .filter(e => e === document.scrollingElement || /auto|scroll/.test(getComputedStyle(e).overflowY))
    .map(e => e.scrollHeight - e.clientHeight))"""


def replay_at_the_end(page):
    """Move the player to the session's last command, so the shot shows the screen of the session."""
    page.locator(".commands a").last.click()
    page.locator(".replay-screen .ap-line", has_text="uptime-42").first.wait_for()


def shoot(page, spec, path):
    """Save the page as a PNG: the screen, or for a page that scrolls its whole length, up to LONGEST screens."""
    page.evaluate("document.fonts.ready.then(() => true)")
    page.mouse.move(0, 0)  # no hover effect in the picture
    size = page.viewport_size
    extra = page.evaluate(OVERFLOW) if spec.whole else 0
    if extra:
        page.set_viewport_size({"width": size["width"], "height": min(size["height"] + extra,
                                                                      int(size["height"] * LONGEST))})
        page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    try:
        page.screenshot(path=path, animations="disabled", caret="hide")
    finally:
        if extra:
            page.set_viewport_size(size)


INTRO = """# Screenshots

Every page of Gatehouse at desktop (1440x900) and phone (390x844) size, in the light and the dark theme, on demo
data: users, devices in folders, teams, a locked account, a recorded session. A script makes them; regenerate them
all with `make screenshots` (about two minutes; it needs Chromium and OpenSSH's sshd, as the browser tests do), or
a few with `.venv/bin/python docs/screenshots/take.py PAGE ...`. `tests/test_accessibility.py` checks the same pages.

| page | desktop, light | desktop, dark | phone, light | phone, dark |
| --- | --- | --- | --- | --- |
"""


def readme():
    """Write the list of screenshots beside them."""
    rows = []
    for name, spec in PAGES.items():
        files = [f"{name}-{size}-{theme}.png" for size, theme in LOOKS]
        cells = [f"[{size}, {theme}]({file})" if (HERE / file).exists() else "—"
                 for (size, theme), file in zip(LOOKS, files)]
        rows.append(f"| {spec.title} (`{name}`) | " + " | ".join(cells) + " |\n")
    (HERE / "README.md").write_text(INTRO + "".join(rows))


def shoot_look(browser, demo, size, theme, chosen, failed):
    """Shoot the chosen pages in one look (size and theme); note the ones that fail and go on."""
    contexts = {}
    try:
        for name, spec in chosen.items():
            file = f"{name}-{size}-{theme}.png"
            try:
                if spec.who not in contexts:
                    context, page = new_context(browser, demo.server, size, theme, axe=False)
                    contexts[spec.who] = (context, page)
                    if spec.who == "admin":
                        log_in(page, demo.server)
                    elif spec.who == "newcomer":
                        log_in(page, demo.server, NEWCOMERS[(size, theme)], USER_PASSWORD)
                page = contexts[spec.who][1]
                spec.open(page, demo)
                if name == "terminal":
                    terminal_with_output(page)
                elif name == "session-replay":
                    replay_at_the_end(page)
                shoot(page, spec, HERE / file)
                print(file, flush=True)
            except Exception as exc:  # one broken page must not cost the others their pictures
                failed.append(f"{file}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                print(f"{file} FAILED: {failed[-1]}", flush=True)
    finally:
        for context, _ in contexts.values():
            context.close()


def main(names):
    """Shoot the named pages (all by default) in every look; then list every screenshot there is."""
    from playwright.sync_api import sync_playwright

    unknown = set(names) - set(PAGES)
    if unknown:
        sys.exit(f"no such page: {', '.join(sorted(unknown))} (pages: {', '.join(PAGES)})")
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    chosen = {name: spec for name, spec in PAGES.items() if not names or name in names}
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="gatehouse-shots-"))
    failed, sshd, server, demo = [], None, None, None
    try:
        sshd = SSHServer(work / "sshd").start()
        server = LiveServer(work / "live", env=SERVER_ENV).start()
        demo = seed(server, sshd)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars"])
            for size, theme in LOOKS:
                shoot_look(browser, demo, size, theme, chosen, failed)
            browser.close()
    finally:
        if demo:
            demo.close()
        for part in (server, sshd):
            if part is not None:
                part.stop()
        shutil.rmtree(work, ignore_errors=True)
    wanted = {f"{name}-{size}-{theme}.png" for name in PAGES for size, theme in LOOKS}
    for old in HERE.glob("*.png") if not names else ():  # a run of a few pages leaves the others' pictures be
        if old.name not in wanted:  # a page that is no longer in the list
            old.unlink()
    readme()
    print(f"{len(chosen) * len(LOOKS) - len(failed)} screenshots in {HERE.relative_to(ROOT)} "
          f"in {time.monotonic() - started:.0f} s")
    if failed:
        sys.exit("failed (the earlier picture, if any, is kept):\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main(sys.argv[1:])
