"""The import preview as a page to check and shoot: a small config with one name twice and one refused line."""

SMALL_CONFIG = """\
# two switches and a router
Host core-sw-1 core-sw-2
    HostName %h.lab.example.org
    User netops
    IdentityFile ~/.ssh/id_ed25519
    ForwardAgent no

Host edge-router
    HostName 10.20.0.1;reboot
    User netops

Host core-sw-2
    User admin

Host *
    User netops
"""


def import_preview(page, demo):
    """Open the import page as the logged-in admin, paste SMALL_CONFIG and wait for the preview."""
    page.goto(demo.server.url + "/devices/import")
    page.locator("#import-text").fill(SMALL_CONFIG)
    page.get_by_role("button", name="Preview").click()
    page.locator("#import-counts").wait_for()
    page.wait_for_load_state("load")
