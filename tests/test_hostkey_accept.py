"""A changed host key is accepted (exactly the key offered), through a real sshd whose key changes between
connections."""
import os
import re
import uuid

import pytest

from tests.support import SSHServer, connect_terminal, csrf_from, live_events, new_user, open_terminal
from tests.test_terminal_sessions import closed_by_server


SHOTS = os.environ.get("GATEHOUSE_SHOTS")  # a folder: the tab's notice and the dialog are shot there


def name():
    return "hk-" + uuid.uuid4().hex[:8]


@pytest.fixture
def servers(tmp_path, sshd):
    """Start sshd with a new host key on one port each time it is called (the one before is stopped)."""
    started = []

    def start(port=0):
        if started:
            started[-1].stop()
        server = SSHServer(tmp_path / f"key{len(started)}", port=port, key_path=sshd.key_path,
                           password=sshd.password).start()
        started.append(server)
        return server

    yield start
    if started:
        started[-1].stop()


def mismatch(live_server, http, url):
    """Open a terminal that the changed key refuses; return its error message."""
    error = closed_by_server(connect_terminal(url, http, live_server.url))[-1]
    assert error["type"] == "error" and error["reason"] == "host_key_mismatch", error
    return error


def accept(live_server, http, accept_url):
    """Post the accept form found on the accept page; return the page it leads to."""
    page = http.get(live_server.url + accept_url).text
    action = re.search(r'<form method="post" action="([^"]+/accept)"', page).group(1)
    return http.post(live_server.url + action, data={"csrf_token": csrf_from(page)})


def test_accepting_stores_exactly_the_key_offered(live_server, servers):
    first = servers()
    http = live_server.login()
    url = f"{live_server.ws_url}/terminals/{live_server.add_device(http, first, name())}/ws"
    open_terminal(url, http, live_server.url).close()  # trusts the first key
    second = servers(first.port)
    error = mismatch(live_server, http, url)
    assert "accept" in error["message"] and "forget" not in error["message"]
    offered_url = error["accept_url"]
    page = http.get(live_server.url + offered_url).text
    assert first.fingerprint() in page and second.fingerprint() in page  # both, side by side
    event = live_events(live_server, "hostkey.mismatch")[-1]
    assert event.details["offered"] == second.fingerprint() and event.details["offered_id"]
    assert offered_url.endswith(f"/{event.details['offered_id']}")

    third = servers(first.port)  # a third key shows up before the second is accepted
    assert mismatch(live_server, http, url)["accept_url"] != offered_url
    response = accept(live_server, http, offered_url)  # the second, as shown: not what is offered now
    assert response.status_code == 200 and second.fingerprint() in response.text
    replaced = live_events(live_server, "hostkey.replaced")[-1]
    assert replaced.details["stored"] == first.fingerprint() and replaced.details["accepted"] == second.fingerprint()
    assert first.fingerprint() in replaced.message and second.fingerprint() in replaced.message
    error = mismatch(live_server, http, url)  # the third still mismatches the accepted key
    assert second.fingerprint() in error["message"] and third.fingerprint() in error["message"]

    servers(first.port)  # a fourth again
    mismatch(live_server, http, url)
    assert http.get(live_server.url + offered_url).status_code == 404  # accepted already: gone
    assert third.fingerprint() in http.get(live_server.url + "/terminals/hostkeys").text  # still waiting


def test_accepting_is_for_admins_and_the_trail_links_to_it(live_server, servers):
    first = servers()
    http = live_server.login()
    device_id = live_server.add_device(http, first, name())
    url = f"{live_server.ws_url}/terminals/{device_id}/ws"
    open_terminal(url, http, live_server.url).close()
    servers(first.port)
    offered_url = mismatch(live_server, http, url)["accept_url"]
    trail = http.get(live_server.url + "/audit/?action=hostkey.mismatch").text
    assert f'href="{offered_url}"' in trail and "accept this new key" in trail
    review = http.get(live_server.url + "/audit/?tab=review").text  # its host-key changes list offers it too
    assert f'href="{offered_url}"' in review[review.index('id="rev-hostkeys"'):]

    user, password = new_user(live_server)
    other = live_server.login(user, password)
    assert other.get(live_server.url + offered_url, allow_redirects=False).status_code == 403
    token = csrf_from(other.get(live_server.url + "/").text)
    assert other.post(live_server.url + offered_url + "/accept", data={"csrf_token": token},
                      allow_redirects=False).status_code == 403
    own = live_server.add_device(other, first, name())  # the user's own device on the changed host
    error = mismatch(live_server, other, f"{live_server.ws_url}/terminals/{own}/ws")
    assert "accept_url" not in error and "ask an administrator" in error["message"]
    assert not [e for e in live_events(live_server, "hostkey.replaced") if e.actor == user]


def test_the_tab_links_to_a_dialog_with_both_fingerprints(page, live_server, servers):
    from tests.support import browser_login

    first = servers()
    http = live_server.login()
    device = name()
    url = f"{live_server.ws_url}/terminals/{live_server.add_device(http, first, device)}/ws"
    open_terminal(url, http, live_server.url).close()
    second = servers(first.port)
    browser_login(page, live_server)
    page.locator(f'button.open-terminal[data-device-name="{device}"]').first.click()
    link = page.locator(".hostkey-notice a", has_text="Accept this new key")
    link.wait_for()
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/hostkey-notice.png")
    with page.context.expect_page() as opened:
        link.click()
    accept_page = opened.value
    accept_page.locator("h1", has_text="Changed host key").wait_for()
    accept_page.wait_for_load_state("load")  # the confirmation is wired by a deferred script
    accept_page.get_by_role("button", name="Accept this new key").click()
    dialog = accept_page.locator("#confirm-dialog")
    dialog.wait_for()
    question = dialog.locator(".confirm-question").inner_text()
    assert first.fingerprint() in question and second.fingerprint() in question
    if SHOTS:
        accept_page.screenshot(path=f"{SHOTS}/hostkey-dialog.png")
    dialog.get_by_role("button", name="Accept this new key").click()
    accept_page.locator(".flash", has_text=second.fingerprint()).wait_for()
    accept_page.close()
    page.locator("button.reconnect").first.click()  # the same tab connects now
    page.locator(".terminal-panel .xterm-rows").get_by_text(re.compile(r"gatehouse-test@.*\$")).first.wait_for()
    assert page.locator(".hostkey-notice").is_hidden()
