"""Single sign-on (OpenID Connect) against a real provider: npm oidc-provider, started by tests/oidc on loopback.

The app's side runs in-process (Flask's test client; its token requests reach the provider over real HTTP) for
the checks and refusals, and under gunicorn with real Chromium for the whole redirect dance.
"""
import base64
import json
import os
import re
import time
import zlib
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from sqlalchemy import func, select, update

from app import create_app
from app.audit.models import AuditEvent
from app.auth.accounts import create_user
from app.auth.models import LoginSession, OidcUsedState, User
from app.auth.oidc_people import username_from
from app.dbtypes import now_utc
from app.extensions import db
from config import ConfigError
from tests.oidc import ADMIN_GROUP, CLIENT_SECRET, PEOPLE, OIDCProvider, gatehouse_settings
from tests.support import ADMIN_PASSWORD, SECRET_KEY, AuthActions, free_port, fresh_postgres, make_app

LOCAL = "http://localhost"  # the test client's origin


@pytest.fixture(scope="module")
def ports():
    """Ports of the two live servers (auto-create on; auto-create off with LOCAL_LOGIN=off), known to the provider."""
    return free_port(), free_port()


@pytest.fixture(scope="module")
def provider(tmp_path_factory, ports):
    server = OIDCProvider(tmp_path_factory.mktemp("provider"),
                          origins=[LOCAL] + [f"http://127.0.0.1:{port}" for port in ports]).start()
    yield server
    server.stop()


@pytest.fixture
def sso_app(tmp_path, provider):
    app = make_app(tmp_path, **gatehouse_settings(provider))
    yield app
    with app.app_context():
        db.engine.dispose()


def begin(client, provider, username, http=None):
    """Click "Sign in with", sign in at the provider; return the callback path the provider sends the browser to."""
    start = client.get("/login/oidc")
    assert start.status_code == 302, start.data[:500]
    callback = provider.sign_in(http or requests.Session(), start.headers["Location"], username)
    assert callback.startswith(LOCAL + "/login/oidc/callback?"), callback
    return callback[len(LOCAL):]


def sso_login(client, provider, username):
    """Go through the whole flow; return the callback's response."""
    return client.get(begin(client, provider, username))


def events(app, action):
    """Return the audit events of one action, oldest first."""
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()


def user_named(app, username):
    with app.app_context():
        return db.session.scalar(select(User).where(User.username == username))


def test_without_an_issuer_there_is_no_button_and_no_route(client):
    page = client.get("/login")
    assert b"Sign in with" not in page.data and b'name="password"' in page.data
    assert client.get("/login/oidc").status_code == 404
    assert client.get("/login/oidc/callback?code=x&state=y").status_code == 404


def test_first_sign_in_creates_an_admin_from_the_group_and_logs_in(sso_app, provider):
    client = sso_app.test_client()
    page = client.get("/login")
    assert b"Sign in with Test provider" in page.data and b'name="password"' in page.data
    start = client.get("/login/oidc")
    query = parse_qs(urlsplit(start.headers["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"] and query["nonce"]
    assert query["state"] and query["redirect_uri"] == [LOCAL + "/login/oidc/callback"]
    callback = provider.sign_in(requests.Session(), start.headers["Location"], "alice")
    response = client.get(callback[len(LOCAL):])
    assert response.status_code == 302 and response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200 and b'class="who">alice<' in home.data and b'id="users-icon"' in home.data
    alice = user_named(sso_app, "alice")
    assert alice.is_admin and alice.oidc_subject == PEOPLE["alice"][1] and alice.oidc_issuer == provider.issuer
    created = events(sso_app, "user.created")[-1]
    assert created.actor == "alice" and created.details["admin"] is True and created.details["method"] == "oidc"
    login = events(sso_app, "auth.login")[-1]
    assert login.actor == "alice" and login.details["method"] == "oidc" and login.details["provider"] == provider.issuer
    assert login.source_ip == "127.0.0.1"
    with sso_app.app_context():
        row = db.session.scalar(select(LoginSession).where(LoginSession.user_id == alice.id))
        assert row.method == "oidc"


def test_bob_is_a_user_and_is_found_by_subject_not_by_name(sso_app, provider):
    client = sso_app.test_client()
    assert sso_login(client, provider, "bob").status_code == 302
    bob = user_named(sso_app, "bob")
    assert not bob.is_admin
    with sso_app.app_context():  # renamed in Gatehouse: the issuer + subject pair still finds him
        db.session.get(User, bob.id).username = "robert"
        db.session.commit()
    client = sso_app.test_client()
    assert sso_login(client, provider, "bob").status_code == 302
    assert b'class="who">robert<' in client.get("/").data
    assert user_named(sso_app, "bob") is None and len(events(sso_app, "user.created")) == 2  # admin, bob


def test_sign_in_returns_to_the_page_asked_for_and_only_on_this_site(sso_app, provider):
    client = sso_app.test_client()
    assert client.get("/account/sessions").headers["Location"] == "/login?next=%2Faccount%2Fsessions"
    assert b'href="/login/oidc?next=/account/sessions"' in client.get("/login?next=%2Faccount%2Fsessions").data
    start = client.get("/login/oidc?next=/account/sessions")
    callback = provider.sign_in(requests.Session(), start.headers["Location"], "bob")
    assert client.get(callback[len(LOCAL):]).headers["Location"] == "/account/sessions"
    other = sso_app.test_client()
    start = other.get("/login/oidc?next=//evil.example/x")
    callback = provider.sign_in(requests.Session(), start.headers["Location"], "bob")
    assert other.get(callback[len(LOCAL):]).headers["Location"] == "/"


@pytest.mark.parametrize("claim,name", [("email", "bob@example.test"), ("nickname", None)])
def test_the_name_comes_from_the_chosen_claim_or_from_the_subject(sso_app, provider, claim, name):
    sso_app.config["OIDC_USERNAME_CLAIM"] = claim  # nobody has a nickname: userinfo is asked, then the subject names
    assert sso_login(sso_app.test_client(), provider, "bob").status_code == 302
    created = events(sso_app, "user.created")[-1].details["username"]
    assert created == name or (name is None and re.fullmatch(r"user-[0-9a-f]{8}", created))


def test_the_group_decides_the_role_at_every_sign_in_both_ways(sso_app, provider):
    assert sso_login(sso_app.test_client(), provider, "alice").status_code == 302
    sso_app.config["OIDC_ADMIN_GROUP"] = "auditors"  # alice is not in it: demoted
    assert sso_login(sso_app.test_client(), provider, "alice").status_code == 302
    assert not user_named(sso_app, "alice").is_admin
    change = events(sso_app, "user.role_changed")[-1]
    assert change.details == {"username": "alice", "role": "user", "by": "oidc", "group": "auditors",
                              "sessions_ended": 0}
    sso_app.config["OIDC_ADMIN_GROUP"] = "/" + ADMIN_GROUP  # a group path matches too
    assert sso_login(sso_app.test_client(), provider, "alice").status_code == 302
    assert user_named(sso_app, "alice").is_admin and events(sso_app, "user.role_changed")[-1].details["role"] == "admin"


def test_sign_in_and_refusals_on_postgresql(tmp_path, provider):
    app = make_app(tmp_path, database_url=fresh_postgres(), **gatehouse_settings(provider))
    try:
        assert sso_login(app.test_client(), provider, "alice").status_code == 302
        assert sso_login(app.test_client(), provider, "alice").status_code == 302  # found by subject
        assert sso_login(app.test_client(), provider, "eve").status_code == 409
        alice = user_named(app, "alice")
        assert alice.is_admin and alice.oidc_subject == PEOPLE["alice"][1]
        assert [e.details["method"] for e in events(app, "auth.login")] == ["oidc", "oidc"]
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_without_auto_create_an_unknown_person_is_not_allowed_until_linked(sso_app, provider):
    sso_app.config["OIDC_AUTO_CREATE"] = "off"
    client = sso_app.test_client()
    response = sso_login(client, provider, "alice")
    assert response.status_code == 403 and b"is not allowed into Gatehouse" in response.data
    assert b"Sign in with Test provider" in response.data and client.get("/").status_code == 302
    failed = events(sso_app, "auth.login_failed")[-1]
    assert failed.actor == "alice" and failed.source_ip == "127.0.0.1"
    assert failed.details["reason"] == "not_allowed" and failed.details["subject"] == PEOPLE["alice"][1]
    assert user_named(sso_app, "alice") is None
    with sso_app.app_context():
        create_user("alice-local", "a-local-password-long", via="console")
    result = sso_app.test_cli_runner().invoke(args=["oidc", "link", "alice-local", PEOPLE["alice"][1]])
    assert result.exit_code == 0, result.output
    assert events(sso_app, "user.updated")[-1].details["subject"] == PEOPLE["alice"][1]
    client = sso_app.test_client()
    assert sso_login(client, provider, "alice").status_code == 302
    assert b'class="who">alice-local<' in client.get("/").data


def test_a_local_account_of_the_same_name_is_never_taken_over(sso_app, provider):
    response = sso_login(sso_app.test_client(), provider, "eve")  # eve calls herself "admin" at the provider
    assert response.status_code == 409 and b"belongs to a Gatehouse account" in response.data
    failed = events(sso_app, "auth.login_failed")[-1]
    assert failed.details["reason"] == "username_taken" and failed.details["username"] == "admin"
    admin = user_named(sso_app, "admin")
    assert admin.oidc_subject is None and len(events(sso_app, "auth.login")) == 0


def test_a_tampered_state_is_refused_and_audited(sso_app, provider):
    client = sso_app.test_client()
    path = begin(client, provider, "alice")
    parts = urlsplit(path)
    query = parse_qs(parts.query)
    state = query["state"][0]
    query["state"] = [state[:-1] + ("A" if state[-1] != "A" else "B")]  # one character changed
    response = client.get(parts.path + "?" + urlencode(query, doseq=True))
    assert response.status_code == 400 and b"was not started in this browser" in response.data
    assert events(sso_app, "auth.login_failed")[-1].details["reason"] == "state_mismatch"
    assert client.get("/").status_code == 302 and user_named(sso_app, "alice") is None


def test_a_callback_used_twice_or_in_another_browser_is_refused(sso_app, provider):
    client = sso_app.test_client()
    path = begin(client, provider, "bob")
    assert sso_app.test_client().get(path).status_code == 400  # another browser: no state of its own
    assert client.get(path).status_code == 302
    assert client.get(path).status_code == 302  # logged in now: the login page sends it home
    other = sso_app.test_client()
    assert other.get(path).status_code == 400
    reasons = [event.details["reason"] for event in events(sso_app, "auth.login_failed")]
    assert reasons == ["state_mismatch", "state_mismatch"]


def test_a_replayed_callback_with_the_cookie_from_before_is_refused_before_the_token_endpoint(sso_app, provider,
                                                                                                monkeypatch):
    client = sso_app.test_client()
    path = begin(client, provider, "bob")
    before = client.get_cookie("gatehouse_session").value  # the cookie as it was when the provider answered
    assert client.get(path).status_code == 302  # the real sign-in
    token_endpoint = sso_app.extensions["gatehouse.oidc"].server_metadata["token_endpoint"]
    asked, real = [], requests.Session.request

    def spy(self, method, url, *args, **kwargs):
        asked.append(url)
        return real(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    replay = sso_app.test_client()
    replay.set_cookie("gatehouse_session", before)
    response = replay.get(path)
    assert response.status_code == 400 and b"This sign-in was used already" in response.data
    assert token_endpoint not in asked  # refused by Gatehouse itself, not by the provider's used-code check
    assert replay.get("/").status_code == 302
    failed = events(sso_app, "auth.login_failed")[-1]
    assert failed.details["reason"] == "state_replayed" and failed.details["method"] == "oidc"
    assert failed.source_ip == "127.0.0.1" and len(events(sso_app, "auth.login")) == 1
    state = parse_qs(urlsplit(path).query)["state"][0]
    with sso_app.app_context():
        stored = db.session.scalars(select(OidcUsedState)).all()
    assert len(stored) == 1 and state not in stored[0].state_hash  # only its hash is kept


def test_used_states_are_claimed_once_and_pruned_when_their_flow_is_over(app):
    from app.auth import oidc_states

    with app.app_context():
        assert oidc_states.claim("state-one", 600) and not oidc_states.claim("state-one", 600)
        db.session.execute(update(OidcUsedState).values(expires_at=now_utc() - timedelta(seconds=1)))
        db.session.commit()
        assert oidc_states.claim("state-two", 600)  # each claim prunes what has expired
        assert db.session.scalar(select(func.count()).select_from(OidcUsedState)) == 1
        assert oidc_states.claim("state-one", 600)  # past its flow's end a state could not be used anyway


def test_a_sign_in_left_unfinished_for_ten_minutes_starts_again(sso_app, provider):
    client = sso_app.test_client()
    path = begin(client, provider, "alice")
    with client.session_transaction() as cookie:
        for key in [key for key in cookie if key.endswith("_sealed")]:
            cookie[key] = {**cookie[key], "exp": time.time() - 1}
    response = client.get(path)
    assert response.status_code == 400 and b"has expired" in response.data
    assert events(sso_app, "auth.login_failed")[-1].details["reason"] == "state_mismatch"


@pytest.mark.parametrize("mode", ["expired", "audience", "issuer", "signature"])
def test_a_bad_id_token_is_refused_and_audited(sso_app, provider, mode):
    client = sso_app.test_client()
    path = begin(client, provider, "alice")
    provider.tamper(mode)
    response = client.get(path)
    assert response.status_code == 401 and b"failed Gatehouse&#39;s checks" in response.data
    failed = events(sso_app, "auth.login_failed")[-1]
    assert failed.details["reason"] == "bad_token" and failed.details["problem"] == mode
    assert failed.details["method"] == "oidc" and failed.source_ip == "127.0.0.1"
    assert client.get("/").status_code == 302 and user_named(sso_app, "alice") is None
    assert not events(sso_app, "auth.login")


def test_a_user_disabled_in_gatehouse_stays_out(sso_app, provider):
    assert sso_login(sso_app.test_client(), provider, "bob").status_code == 302
    with sso_app.app_context():
        db.session.scalar(select(User).where(User.username == "bob")).disabled = True
        db.session.commit()
    client = sso_app.test_client()
    response = sso_login(client, provider, "bob")
    assert response.status_code == 403 and b"Your Gatehouse account is disabled." in response.data
    failed = events(sso_app, "auth.login_failed")[-1]
    assert failed.details["reason"] == "disabled" and failed.actor == "bob" and failed.user_id is not None
    assert client.get("/").status_code == 302


def test_the_provider_saying_no_is_refused_and_audited(sso_app, provider):
    client = sso_app.test_client()
    start = client.get("/login/oidc")
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    response = client.get(f"/login/oidc/callback?error=access_denied&state={state}")
    assert response.status_code == 401 and b"did not sign you in (access_denied)" in response.data
    assert events(sso_app, "auth.login_failed")[-1].details["reason"] == "provider_error"


def test_a_provider_that_is_down_gives_a_clear_page(tmp_path):
    app = make_app(tmp_path, OIDC_ISSUER=f"http://127.0.0.1:{free_port()}", OIDC_CLIENT_ID="gatehouse",
                   OIDC_DISPLAY_NAME="Test provider")
    client = app.test_client()
    assert client.get("/login").status_code == 200  # no discovery before the first click
    response = client.get("/login/oidc")
    assert response.status_code == 503 and b"Test provider cannot be reached right now" in response.data
    assert b"Traceback" not in response.data
    assert events(app, "auth.login_failed")[-1].details["reason"] == "provider_unreachable"


def test_a_provider_that_goes_down_during_the_sign_in_gives_a_clear_page(tmp_path):
    provider = OIDCProvider(tmp_path / "op", origins=[LOCAL]).start()
    app = make_app(tmp_path, **gatehouse_settings(provider))
    client = app.test_client()
    try:
        path = begin(client, provider, "alice")
    finally:
        provider.stop()
    response = client.get(path)
    assert response.status_code == 503 and b"Test provider cannot be reached right now" in response.data
    assert events(app, "auth.login_failed")[-1].details["reason"] == "provider_unreachable"
    assert client.get("/").status_code == 302


def test_sso_users_have_no_usable_password(sso_app, provider):
    assert sso_login(sso_app.test_client(), provider, "bob").status_code == 302
    auth = AuthActions(sso_app.test_client())
    for guess in ("", "bob-password", "bob"):
        assert auth.login("bob", guess or "x").status_code == 401


def test_log_out_offers_to_sign_out_of_the_provider(sso_app, provider):
    client = sso_app.test_client()
    assert sso_login(client, provider, "bob").status_code == 302
    response = AuthActions(client).logout()
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    page = client.get("/login")
    assert b"You are logged out." in page.data and b"Also sign out of Test provider" in page.data
    assert events(sso_app, "auth.logout")[-1].actor == "bob"
    out = client.get("/logout/oidc")
    target = urlsplit(out.headers["Location"])
    assert out.status_code == 302 and f"{target.scheme}://{target.netloc}" == provider.issuer
    query = parse_qs(target.query)
    assert query["client_id"] == ["gatehouse"] and query["post_logout_redirect_uri"] == [LOCAL + "/login"]
    assert "id_token_hint" not in query
    assert b"Also sign out" not in client.get("/login").data
    # A password log-in's log-out offers nothing.
    AuthActions(client).login()
    AuthActions(client).logout()
    assert b"Also sign out" not in client.get("/login").data


def _cookie_payload(client):
    """Return the decoded JSON of Flask's session cookie."""
    value = client.get_cookie("gatehouse_session").value
    compressed = value.startswith(".")
    data = base64.urlsafe_b64decode(value.lstrip(".").split(".")[0] + "==")
    return (zlib.decompress(data) if compressed else data).decode()


def test_no_secret_reaches_the_cookie_the_trail_or_a_page(sso_app, provider):
    client = sso_app.test_client()
    start = client.get("/login/oidc")
    nonce = parse_qs(urlsplit(start.headers["Location"]).query)["nonce"][0]
    cookie = _cookie_payload(client)
    assert nonce not in cookie and "code_verifier" not in cookie and "nonce" not in cookie
    callback = provider.sign_in(requests.Session(), start.headers["Location"], "alice")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    page = client.get(callback[len(LOCAL):], follow_redirects=True)
    with sso_app.app_context():
        trail = json.dumps([[e.message, e.details] for e in db.session.scalars(select(AuditEvent))])
    for secret in (CLIENT_SECRET, code, nonce):
        assert secret not in trail and secret not in page.get_data(as_text=True)
        assert secret not in _cookie_payload(client)


def test_local_login_off_hides_the_form_and_refuses_passwords(tmp_path, provider):
    app = make_app(tmp_path, **gatehouse_settings(provider, LOCAL_LOGIN="off"))
    client = app.test_client()
    page = client.get("/login")
    assert b"Sign in with Test provider" in page.data and b'name="password"' not in page.data
    assert b"or with a password" not in page.data
    token = AuthActions(client).csrf()
    response = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert response.status_code == 403 and b"Log-in with a password is turned off here" in response.data
    assert client.get("/").status_code == 302 and not events(app, "auth.login")
    result = app.test_cli_runner().invoke(args=["users", "create", "rescue", "--admin", "--password",
                                                "rescue-password-long"])
    assert result.exit_code == 0, result.output  # the emergency admin still comes from the console


def test_local_login_off_without_an_issuer_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="LOCAL_LOGIN=off needs OIDC_ISSUER"):
        create_app({"SECRET_KEY": SECRET_KEY, "INSTANCE_DIR": str(tmp_path), "LOCAL_LOGIN": "off",
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}"})


@pytest.mark.parametrize("issuer", ["http://idp.example.org", "ftp://127.0.0.1/", "127.0.0.1:8080"])
def test_an_issuer_must_be_https_or_loopback(tmp_path, issuer):
    with pytest.raises(ConfigError, match="OIDC_ISSUER"):
        create_app({"SECRET_KEY": SECRET_KEY, "INSTANCE_DIR": str(tmp_path), "OIDC_ISSUER": issuer,
                    "OIDC_CLIENT_ID": "x", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}"})


@pytest.mark.parametrize("claim,expected", [
    ("alice", "alice"), ("Dana Smith", "Dana-Smith"), ("jürgen.müller@example.org", "jurgen.muller@example.org"),
    ("  --weird//name--  ", "weird-name"), ("", None), (None, None), ("ДМИТРИЙ", None), ("x" * 80, "x" * 60),
])
def test_names_from_the_provider_are_made_valid(claim, expected):
    assert username_from(claim) == expected


def test_the_readmes_example_for_the_test_provider_is_what_the_tests_use():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("**The test provider**", 1)[1].split("make run\n```", 1)[0]
    shown = dict(re.findall(r"^(OIDC_\w+)=(\"[^\"]*\"|\S+)", block, re.MULTILINE))
    shown = {name: value.strip('"') for name, value in shown.items()}
    assert shown == gatehouse_settings(SimpleNamespace(issuer="http://127.0.0.1:9400"))
    by_hand = (Path(__file__).resolve().parent / "oidc" / "provider.mjs").read_text()
    assert "port: 9400" in by_hand and f"client_secret: '{CLIENT_SECRET}'" in by_hand


# --- real Chromium through the whole redirect dance, against gunicorn ---

@pytest.fixture(scope="module")
def sso_server(module_live_servers, provider, ports):
    return module_live_servers(port=ports[0], **gatehouse_settings(provider))


@pytest.fixture(scope="module")
def closed_server(module_live_servers, provider, ports):
    """Single sign-on only (LOCAL_LOGIN=off) and nobody is created (OIDC_AUTO_CREATE=off)."""
    return module_live_servers(port=ports[1], **gatehouse_settings(provider, OIDC_AUTO_CREATE="off", LOCAL_LOGIN="off"))


def _loopback_only(context):
    """Refuse any request of the browser that leaves 127.0.0.1."""
    context.route("**/*", lambda route: route.continue_() if urlsplit(route.request.url).hostname == "127.0.0.1"
                  else route.abort())


def _new_page(browser, width=1280, height=800):
    context = browser.new_context(viewport={"width": width, "height": height})
    _loopback_only(context)
    page = context.new_page()
    return context, page


def _sign_in_at_provider(page, username):
    page.fill('input[name="login"]', username)
    page.fill('input[name="password"]', PEOPLE[username][0])
    page.click('button[type="submit"]')


def _shoot(page, name):
    """Save a screenshot into GATEHOUSE_SHOTS when it is set."""
    folder = os.environ.get("GATEHOUSE_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_browser_alice_admin_bob_user_and_sign_out_at_the_provider(browser, sso_server, provider):
    context, page = _new_page(browser)
    page.goto(sso_server.url + "/login")
    _shoot(page, "sso-login-desktop")
    page.click("text=Sign in with Test provider")
    page.wait_for_url(provider.issuer + "/interaction/**")
    _sign_in_at_provider(page, "alice")
    page.wait_for_url(sso_server.url + "/")
    assert page.inner_text(".who") == "alice" and page.is_visible("#users-icon")
    page.click("#logout-icon")
    page.wait_for_url(sso_server.url + "/login")
    assert page.is_visible("text=You are logged out.")
    _shoot(page, "sso-signed-out-desktop")
    page.click("text=Also sign out of Test provider")
    page.wait_for_url(provider.issuer + "/session/end**")
    page.click("text=Yes, sign me out")
    page.wait_for_url(sso_server.url + "/login**")
    page.click("text=Sign in with Test provider")  # signed out there too: the provider asks again
    page.wait_for_url(provider.issuer + "/interaction/**")
    context.close()

    context, page = _new_page(browser, 390, 844)
    page.goto(sso_server.url + "/login")
    _shoot(page, "sso-login-phone")
    page.click("text=Sign in with Test provider")
    _sign_in_at_provider(page, "bob")
    page.wait_for_url(sso_server.url + "/")
    assert page.inner_text(".who") == "bob" and not page.is_visible("#users-icon")
    context.close()
    log = sso_server.log_text()
    assert CLIENT_SECRET not in log and "code=" not in log


def test_browser_without_auto_create_is_refused_and_without_local_login_shows_no_form(browser, closed_server,
                                                                                        provider):
    for width, height, name in ((1280, 800, "desktop"), (390, 844, "phone")):
        context, page = _new_page(browser, width, height)
        page.goto(closed_server.url + "/login")
        assert page.locator('input[name="password"]').count() == 0
        _shoot(page, f"sso-only-login-{name}")
        context.close()
    context, page = _new_page(browser)
    page.goto(closed_server.url + "/login")
    page.click("text=Sign in with Test provider")
    _sign_in_at_provider(page, "alice")
    page.wait_for_url(closed_server.url + "/login/oidc/callback**")
    assert page.is_visible("text=is not allowed into Gatehouse")
    _shoot(page, "sso-refused-desktop")
    context.close()
