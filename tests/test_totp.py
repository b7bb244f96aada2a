"""The second factor: TOTP with a clock the tests set, recovery codes that work once, REQUIRE_2FA, resets, a browser."""
import json
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.auth import totp
from app.auth.accounts import create_user
from app.auth.models import LoginSession, RecoveryCode, User
from app.extensions import db
from tests.support import ADMIN_PASSWORD, AuthActions, csrf_from, make_app

PASSWORD = "user-password-long"
CODE_SHAPE = re.compile(r"<code>([2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4})</code>")
SHOTS = os.environ.get("GATEHOUSE_SHOTS")


class Clock:
    """A clock the test sets: totp.clock() answers its .now."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    # 15 s into a 30 s step, so one step back or forward is never ambiguous.
    fixed = Clock(1_900_000_005.0)
    monkeypatch.setattr(totp, "clock", fixed)
    return fixed


def events(app, action):
    """Return the events of one action, oldest first."""
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
    return rows


def all_event_text(app):
    """Return every field of every event as one text (to look for secrets in)."""
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent)).all()
        return "\n".join(f"{r.actor} {r.message} {r.target} {json.dumps(r.details)}" for r in rows)


def user_row(app, name):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == name))
        db.session.expunge(user)
        return user


def new_client(app, name="bob", admin=False):
    """Create a user and return a test client logged in as them with their password."""
    with app.app_context():
        create_user(name, PASSWORD, admin=admin, via="console")
    client = app.test_client()
    assert AuthActions(client).login(name, PASSWORD).status_code == 302
    return client


def enrol(client, clock):
    """Set up TOTP from the settings page; return (secret, recovery codes, enrolment page html)."""
    token = csrf_from(client.get("/account/2fa").get_data(as_text=True))
    page = client.post("/account/2fa/start", data={"csrf_token": token})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', html).group(1).replace(" ", "")
    done = client.post("/account/2fa/confirm", data={"csrf_token": csrf_from(html),
                                                     "code": pyotp.TOTP(secret).at(clock.now)})
    assert done.status_code == 200, done.get_data(as_text=True)[:500]
    codes = CODE_SHAPE.findall(done.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes, html


def password_step(client, name="bob", password=PASSWORD):
    """Log in with a password; return the response (a redirect to the second step for an enrolled user)."""
    return AuthActions(client).login(name, password)


def send_code(client, code, path="/login/code"):
    """Post a code to the second step (the CSRF token from its own page)."""
    page = client.get(path)
    assert page.status_code == 200, page.headers.get("Location")
    return client.post(path, data={"csrf_token": csrf_from(page.get_data(as_text=True)), "code": code})


def enrolled(app, clock, name="bob", admin=False):
    """Return (client logged out, secret, recovery codes) of a user who has enrolled TOTP."""
    client = new_client(app, name, admin)
    secret, codes, _ = enrol(client, clock)
    AuthActions(client).logout()
    clock.now += 30  # the enrolment used this step's code
    return client, secret, codes


# --- enrolment -------------------------------------------------------------------------------------------------

def test_enrolment_shows_an_inline_svg_qr_and_the_secret_and_keeps_both_out_of_the_trail(app, clock, caplog):
    caplog.set_level(logging.DEBUG)
    client = new_client(app)
    secret, codes, html = enrol(client, clock)
    assert re.search(r'<div class="qr-box"><svg [^>]*class="qr"', html)  # markup in the page, no image request
    assert "otpauth" not in html.replace(secret, "")  # no third-party image service: the URI is only in the SVG
    assert len(secret) == 32 and pyotp.TOTP(secret).at(clock.now).isdigit()
    user = user_row(app, "bob")
    assert user.totp_enabled_at is not None and secret.encode() not in user.totp_secret_enc
    [enrolled_event] = events(app, "auth.2fa_enrolled")
    assert enrolled_event.actor == "bob" and enrolled_event.details == {"factor": "totp"}
    with app.app_context():
        hashes = db.session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)).all()
    assert len(hashes) == 10 and not any(code in stored for code in codes for stored in hashes)
    trail = all_event_text(app)
    for value in [secret, *codes]:
        assert value not in trail and value not in caplog.text
    # The settings page now says on, and never shows the secret again.
    page = client.get("/account/2fa").get_data(as_text=True)
    assert "10 recovery codes left" in page and secret[:8] not in page and "<svg" not in page.split("</header>")[1]


def test_a_wrong_enrolment_code_keeps_it_off_and_is_audited(app, clock):
    client = new_client(app)
    token = csrf_from(client.get("/account/2fa").get_data(as_text=True))
    html = client.post("/account/2fa/start", data={"csrf_token": token}).get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', html).group(1).replace(" ", "")
    wrong = f"{(int(pyotp.TOTP(secret).at(clock.now)) + 1) % 10**6:06d}"
    response = client.post("/account/2fa/confirm", data={"csrf_token": csrf_from(html), "code": wrong})
    assert response.status_code == 422 and b"That code does not fit" in response.data
    assert secret in response.get_data(as_text=True).replace(" ", "")  # the same secret, to try again
    assert user_row(app, "bob").totp_enabled_at is None
    [failed] = events(app, "auth.2fa_failed")
    assert failed.details == {"reason": "wrong_code", "during": "enrolment"} and wrong not in all_event_text(app)


# --- the code step of a log-in ------------------------------------------------------------------------------

def test_log_in_needs_the_code_and_each_code_is_good_once(any_app, clock):
    app = any_app
    client, secret, _ = enrolled(app, clock)
    response = password_step(client)
    assert response.status_code == 302 and response.headers["Location"] == "/login/code"
    assert client.get("/").status_code == 302  # the password alone opens nothing
    totp = pyotp.TOTP(secret)
    response = send_code(client, totp.at(clock.now))
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    login = events(app, "auth.login")[-1]
    assert login.actor == "bob" and login.details["method"] == "password" and login.details["factor"] == "totp"
    # The same code again (a replay, e.g. seen over a shoulder) is refused, though still in its step.
    AuthActions(client).logout()
    password_step(client)
    response = send_code(client, totp.at(clock.now))
    assert response.status_code == 401 and b"The code is wrong or was already used." in response.data
    assert events(app, "auth.2fa_failed")[-1].details == {"reason": "replayed", "during": "log-in"}
    # The next step's code works.
    clock.now += 30
    assert send_code(client, totp.at(clock.now)).status_code == 302


def test_a_code_one_step_old_works_and_two_steps_old_does_not(app, clock):
    client, secret, _ = enrolled(app, clock)
    totp = pyotp.TOTP(secret)
    clock.now += 120  # the enrolment's step is long past
    password_step(client)
    assert send_code(client, totp.at(clock.now - 60)).status_code == 401
    assert events(app, "auth.2fa_failed")[-1].details["reason"] == "wrong_code"
    assert send_code(client, totp.at(clock.now - 30)).status_code == 302
    AuthActions(client).logout()
    password_step(client)
    assert send_code(client, totp.at(clock.now + 30)).status_code == 302  # a phone a little ahead
    AuthActions(client).logout()
    password_step(client)
    # Once a later step was used, an earlier (still valid) one is refused too.
    assert send_code(client, totp.at(clock.now)).status_code == 401
    assert events(app, "auth.2fa_failed")[-1].details["reason"] == "replayed"


def test_wrong_codes_are_audited_and_throttled_like_wrong_passwords(app, clock):
    client, secret, _ = enrolled(app, clock)
    password_step(client)
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert send_code(client, "000000" if pyotp.TOTP(secret).at(clock.now) != "000000" else "111111").status_code == 401
    failed = events(app, "auth.2fa_failed")
    assert [e.details["reason"] for e in failed] == ["wrong_code"] * 5
    assert all(e.outcome == "failure" and e.severity == "warning" and e.actor == "bob" for e in failed)
    [throttled] = events(app, "auth.throttled")
    assert throttled.actor == "bob"
    # The name now waits: even the right code is refused unchecked, with Retry-After.
    response = send_code(client, pyotp.TOTP(secret).at(clock.now))
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert b"Too many failed log-ins for this name" in response.data
    assert events(app, "auth.2fa_failed")[-1].details["reason"] == "throttled"
    assert client.get("/").status_code == 302


def test_wrong_codes_count_towards_the_lock_in_lock_mode(tmp_path, clock):
    app = make_app(tmp_path, LOCKOUT_MODE="lock", LOGIN_LOCK_MINUTES=30)
    client, secret, _ = enrolled(app, clock)
    password_step(client)
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        send_code(client, "000000" if pyotp.TOTP(secret).at(clock.now) != "000000" else "111111")
    [locked] = events(app, "auth.locked")
    assert locked.actor == "bob"
    response = send_code(client, pyotp.TOTP(secret).at(clock.now))  # locked: the right code does not help
    assert response.status_code == 401 and events(app, "auth.2fa_failed")[-1].details["reason"] == "locked"


def test_a_recovery_code_works_once(any_app, clock):
    app = any_app
    client, _, codes = enrolled(app, clock)
    password_step(client)
    response = send_code(client, codes[3].upper().replace("-", " "))  # as typed from paper
    assert response.status_code == 302 and client.get("/").status_code == 200
    [used] = events(app, "auth.recovery_code_used")
    assert used.details == {"left": 9, "during": "log-in"} and used.severity == "warning"
    assert events(app, "auth.login")[-1].details["factor"] == "recovery_code"
    AuthActions(client).logout()
    password_step(client)
    response = send_code(client, codes[3])
    assert response.status_code == 401
    assert events(app, "auth.2fa_failed")[-1].details == {"reason": "used_recovery_code", "during": "log-in"}
    assert send_code(client, "abcd-efgh-jkmn").status_code == 401
    assert events(app, "auth.2fa_failed")[-1].details["reason"] == "wrong_recovery_code"
    assert codes[3] not in all_event_text(app)


@pytest.mark.parametrize("spent,told,urged", [(0, "A recovery code was used; 9 left.", False),
                                              (6, "A recovery code was used; 3 left.", True),
                                              (9, "A recovery code was used; 0 left.", True)])
def test_a_recovery_code_log_in_says_how_many_are_left(app, clock, spent, told, urged):
    client, _, codes = enrolled(app, clock)
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.username == "bob"))
        for code in codes[:spent]:  # spent earlier
            assert totp.use_recovery_code(db.session.get(User, user_id), code)[0] == totp.OK
    password_step(client)
    assert send_code(client, codes[spent]).status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert told in page
    link = 'href="/account/2fa#new-codes" id="make-new-codes">Make new recovery codes</a>'
    assert (link in page) is urged and ('class="flash error"' in page) is urged


def test_parallel_tries_of_one_code_or_recovery_code_win_once(any_app, clock):
    """Four requests at once with the same code: the conditional updates let exactly one through."""
    app = any_app
    _, secret, codes = enrolled(app, clock)
    barrier = threading.Barrier(4)

    def attempt(use, text):
        with app.app_context():
            user = db.session.scalar(select(User).where(User.username == "bob"))
            barrier.wait()
            try:
                outcome = use(user, text)
                return outcome[0] if isinstance(outcome, tuple) else outcome
            finally:
                db.session.remove()

    for use, text, lost in ((totp.use_totp, pyotp.TOTP(secret).at(clock.now), totp.REPLAYED),
                            (totp.use_recovery_code, codes[0], totp.USED)):
        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(attempt, [use] * 4, [text] * 4))
        assert sorted(outcomes) == sorted([totp.OK] + [lost] * 3)


def test_the_pending_state_expires(app, clock):
    client, secret, _ = enrolled(app, clock)
    password_step(client)
    clock.now += totp.PENDING_SECONDS + 1
    response = client.get("/login/code")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert b"That took too long" in client.get("/login").data
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login/code", data={"csrf_token": token, "code": pyotp.TOTP(secret).at(clock.now)})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("path", ["/", "/account/2fa", "/account/sessions", "/audit/", "/users/", "/login/enrol"])
def test_a_pending_log_in_reaches_no_other_page(app, clock, path):
    client, _, _ = enrolled(app, clock, name="carol", admin=True)
    password_step(client, "carol")
    response = client.get(path)
    assert response.status_code in (302, 401) and response.headers["Location"].startswith("/login")


def test_a_reset_during_the_pending_step_ends_it(app, clock, runner):
    client, secret, _ = enrolled(app, clock)
    password_step(client)
    assert runner.invoke(args=["users", "reset-2fa", "bob"]).exit_code == 0
    response = client.get("/login/code")
    assert response.status_code == 302 and response.headers["Location"] == "/login"


# --- REQUIRE_2FA ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule,admin_enrols,user_enrols", [
    ("admins", True, False),
    ("all", True, True),
    ("off", False, False),
])
def test_require_2fa_sends_who_it_names_to_enrolment(tmp_path, rule, admin_enrols, user_enrols):
    app = make_app(tmp_path, REQUIRE_2FA=rule)
    with app.app_context():
        create_user("bob", PASSWORD, via="console")
    for name, password, enrols in (("admin", ADMIN_PASSWORD, admin_enrols), ("bob", PASSWORD, user_enrols)):
        client = app.test_client()
        response = password_step(client, name, password)
        assert response.status_code == 302
        assert response.headers["Location"] == ("/login/enrol" if enrols else "/")
        assert client.get("/").status_code == (302 if enrols else 200)


def test_the_default_is_admins(tmp_path, monkeypatch):
    monkeypatch.delenv("REQUIRE_2FA", raising=False)
    from config import Config

    assert Config().REQUIRE_2FA == "admins"


def test_forced_enrolment_is_the_log_in_and_ends_only_with_a_confirmed_code(tmp_path, clock):
    app = make_app(tmp_path, REQUIRE_2FA="admins")
    client = app.test_client()
    password_step(client, "admin", ADMIN_PASSWORD)
    page = client.get("/login/enrol")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and '<svg' in html and "Your account needs a second factor" in html
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', html).group(1).replace(" ", "")
    assert client.get("/").status_code == 302 and client.get("/login/code").status_code == 302
    password_step(client, "admin", ADMIN_PASSWORD)  # the code page sent us back; a new pending state
    html = client.get("/login/enrol").get_data(as_text=True)
    fresh = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', html).group(1).replace(" ", "")
    assert fresh != secret  # each unfinished enrolment gets its own secret
    wrong = client.post("/login/enrol", data={"csrf_token": csrf_from(html), "code": "12345"})
    assert wrong.status_code == 422 and client.get("/").status_code == 302
    done = client.post("/login/enrol", data={"csrf_token": csrf_from(html), "code": pyotp.TOTP(fresh).at(clock.now)})
    assert done.status_code == 200 and len(CODE_SHAPE.findall(done.get_data(as_text=True))) == 10
    assert client.get("/").status_code == 200
    [enrolled_event] = events(app, "auth.2fa_enrolled")
    assert enrolled_event.actor == "admin" and enrolled_event.details == {"factor": "totp", "forced": "admins"}
    login = events(app, "auth.login")[-1]
    assert login.details["factor"] == "totp" and login.details["enrolled"] is True
    # An admin must keep it: no Turn off button, and the POST is refused.
    page = client.get("/account/2fa").get_data(as_text=True)
    assert "Turn off" not in page and "cannot be turned off" in page
    token = csrf_from(page)
    assert client.post("/account/2fa/disable", data={"csrf_token": token, "code": "000000"}).status_code == 403
    assert user_row(app, "admin").totp_enabled_at is not None


# --- settings: new recovery codes, turning off -----------------------------------------------------------------

def test_new_recovery_codes_need_a_code_and_replace_the_old(app, clock):
    client = new_client(app)
    secret, old_codes, _ = enrol(client, clock)
    token = csrf_from(client.get("/account/2fa").get_data(as_text=True))
    refused = client.post("/account/2fa/recovery-codes", data={"csrf_token": token, "code": "000000"})
    assert refused.status_code == 401 and not events(app, "auth.recovery_codes_regenerated")
    clock.now += 30
    response = client.post("/account/2fa/recovery-codes",
                           data={"csrf_token": token, "code": pyotp.TOTP(secret).at(clock.now)})
    new_codes = CODE_SHAPE.findall(response.get_data(as_text=True))
    assert response.status_code == 200 and len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    [regenerated] = events(app, "auth.recovery_codes_regenerated")
    assert regenerated.actor == "bob" and regenerated.details == {"count": 10}
    AuthActions(client).logout()
    password_step(client)
    assert send_code(client, old_codes[0]).status_code == 401
    assert send_code(client, new_codes[0]).status_code == 302


def test_turning_off_needs_a_code_then_the_password_is_enough(app, clock):
    client = new_client(app)
    secret, _, _ = enrol(client, clock)
    token = csrf_from(client.get("/account/2fa").get_data(as_text=True))
    clock.now += 30
    response = client.post("/account/2fa/disable", data={"csrf_token": token, "code": pyotp.TOTP(secret).at(clock.now)})
    assert response.status_code == 302 and events(app, "auth.2fa_disabled")[0].actor == "bob"
    user = user_row(app, "bob")
    assert user.totp_secret_enc is None and user.totp_enabled_at is None
    AuthActions(client).logout()
    assert password_step(client).headers["Location"] == "/"


def test_turning_the_factor_on_or_off_gives_this_browser_a_new_token(app, clock):
    client = new_client(app)
    other = app.test_client()
    assert AuthActions(other).login("bob", PASSWORD).status_code == 302
    before = client.get_cookie("gatehouse_session").value
    secret, _, _ = enrol(client, clock)
    after_on = client.get_cookie("gatehouse_session").value
    assert after_on != before and client.get("/account/2fa").status_code == 200
    token = csrf_from(client.get("/account/2fa").get_data(as_text=True))
    clock.now += 30
    response = client.post("/account/2fa/disable", data={"csrf_token": token, "code": pyotp.TOTP(secret).at(clock.now)})
    assert response.status_code == 302 and client.get("/").status_code == 200
    for old in (before, after_on):  # copies from before each change open nothing
        copy = app.test_client()
        copy.set_cookie("gatehouse_session", old)
        assert copy.get("/").headers["Location"].startswith("/login")
    assert other.get("/").headers["Location"].startswith("/login")  # the other log-in from before ended too
    reasons = [e.details["reason"] for e in events(app, "auth.session_revoked")]
    assert reasons == ["second_factor_changed"] * 3  # this browser's token twice, the other log-in once


# --- resets by an admin and from the console ---------------------------------------------------------------

def test_an_admin_resets_a_users_second_factor_and_their_log_ins_end(app, clock, auth, client):
    bob = new_client(app)
    enrol(bob, clock)
    assert bob.get("/").status_code == 200
    auth.login()
    bob_id = user_row(app, "bob").id
    page = client.get("/users/").get_data(as_text=True)
    assert f"/users/{bob_id}/reset-2fa" in page and "Reset second factor" in page
    assert client.post(f"/users/{bob_id}/reset-2fa").status_code == 400  # CSRF
    response = client.post(f"/users/{bob_id}/reset-2fa", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 302
    [reset] = events(app, "auth.2fa_reset")
    assert reset.actor == "admin" and reset.details == {"username": "bob", "by": "admin", "had_factor": True}
    revoked = events(app, "auth.session_revoked")[-1]
    assert revoked.details["user"] == "bob" and revoked.details["reason"] == "ended_by_admin"
    assert bob.get("/").status_code == 302  # bob's log-in ended
    with app.app_context():
        assert db.session.scalar(select(RecoveryCode).where(RecoveryCode.user_id == bob_id)) is None
        assert not db.session.scalars(select(LoginSession).where(LoginSession.user_id == bob_id,
                                                                 LoginSession.revoked_at.is_(None))).all()
    assert password_step(bob).headers["Location"] == "/"  # REQUIRE_2FA=off here: the password is enough again


def test_the_console_resets_a_second_factor(app, clock, runner):
    client, _, _ = enrolled(app, clock)
    result = runner.invoke(args=["users", "reset-2fa", "BOB"])
    assert result.exit_code == 0 and "second factor of bob reset" in result.output
    [reset] = events(app, "auth.2fa_reset")
    assert reset.actor == "console" and reset.details["by"] == "console"
    assert user_row(app, "bob").totp_enabled_at is None
    assert runner.invoke(args=["users", "reset-2fa", "nobody"]).exit_code == 1


# --- in a real browser ------------------------------------------------------------------------------------------

def _shot(page, name):
    """Save the page at both sizes into GATEHOUSE_SHOTS when set."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for width, height in ((1280, 800), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=f"{SHOTS}/{name}-{width}x{height}.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


@pytest.fixture
def admins_server(live_servers):
    """gunicorn with the default REQUIRE_2FA=admins, as a newcomer runs it."""
    return live_servers(REQUIRE_2FA="admins")


def test_browser_first_admin_enrols_then_logs_in_with_a_code(admins_server, page):
    import time

    server = admins_server
    page.goto(server.url + "/login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/login/enrol")
    assert page.locator("#enrol svg.qr").is_visible()
    _shot(page, "twofactor-enrol")
    secret = page.inner_text("#totp-secret").replace(" ", "")
    totp = pyotp.TOTP(secret)
    page.fill("#code", totp.now())
    page.click("#enrol button[type=submit]")
    page.locator("#recovery-codes").wait_for()
    codes = page.locator("#recovery-codes li code").all_inner_texts()
    assert len(codes) == 10
    _shot(page, "twofactor-recovery-codes")
    page.click("#codes-done")
    page.wait_for_url(server.url + "/")
    page.click("#logout-icon")
    page.wait_for_url(re.compile(re.escape(server.url) + "/login"))
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/login/code")
    _shot(page, "twofactor-code")
    page.fill("#code", totp.at(time.time() + 30))  # the next step: the enrolment used this one
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")
    assert page.locator("#twofactor-icon").is_visible()
    page.click("#twofactor-icon")
    page.locator("#twofactor-settings").wait_for()
    assert "9 recovery codes left" not in page.content() and "10 recovery codes left" in page.content()
    _shot(page, "twofactor-settings")
    assert secret not in server.log_text()
