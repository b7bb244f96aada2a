"""Gatehouse behind real nginx on any port and scheme: the public origin, the Origin check, UTC log lines."""
import datetime
import http.server
import ipaddress
import os
import re
import shutil
import threading
import time
from types import SimpleNamespace

import pytest
import simple_websocket

from app.origins import check_websocket_origin, public_origin
from tests.support import (NGINX_CONF, LiveServer, browser_login, connect_terminal, free_port, make_app, missing,
                           start_nginx, wait_for_port)

# Every hop: the README's lines. The front hop alone says the scheme; the inner hop passes it on untouched.
HOP = ("proxy_http_version 1.1; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
       "proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; "
       "proxy_read_timeout 1h; proxy_set_header Host {host}; {extra}")
SERVER = "  server {{ listen 127.0.0.1:{port}{ssl}; {tls} location / {{ proxy_pass http://127.0.0.1:{to}; {hop} }} }}\n"
# name: (app, Host header each hop sends, what the front hop adds, TLS at the front)
CHAINS = {
    "http_host": ("plain", "$http_host", "proxy_set_header X-Forwarded-Proto $scheme;", False),
    "host": ("public", "$host", "proxy_set_header X-Forwarded-Proto $scheme;", False),
    "tls": ("plain", "$http_host", "proxy_set_header X-Forwarded-Proto https;", True),
    "host_unconfigured": ("plain", "$host", "proxy_set_header X-Forwarded-Proto $scheme;", False),
}
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (DEBUG|INFO|WARNING|ERROR|CRITICAL) \[")


def self_signed(folder):
    """Write a throw-away certificate and key for 127.0.0.1; return their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def nginx_servers(workdir, ports, apps):
    """Return the server blocks: per chain a front hop and an inner hop, each on a non-default port."""
    cert, key = self_signed(workdir)
    blocks = ""
    for chain, (app, host, front_extra, tls) in CHAINS.items():
        front, inner = ports[chain]
        tls_lines = f"ssl_certificate {cert}; ssl_certificate_key {key};" if tls else ""
        blocks += SERVER.format(port=front, ssl=" ssl" if tls else "", tls=tls_lines, to=inner,
                                hop=HOP.format(host=host, extra=front_extra))
        blocks += SERVER.format(port=inner, ssl="", tls="", to=apps[app].port, hop=HOP.format(host=host, extra=""))
    return blocks


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, module_live_servers, sshd):
    """Two apps (TRUSTED_PROXY_HOPS=2; one with PUBLIC_URL) behind one nginx serving four two-hop chains."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        missing("nginx (apt-get install nginx)")
    workdir = tmp_path_factory.mktemp("proxies")
    ports = {chain: (free_port(), free_port()) for chain in CHAINS}
    urls = {chain: f"{'https' if CHAINS[chain][3] else 'http'}://127.0.0.1:{ports[chain][0]}" for chain in CHAINS}
    env = {"TRUSTED_PROXY_HOPS": "2", "TZ": "America/New_York"}
    apps = {"plain": module_live_servers(workdir=workdir / "plain", **env)}
    apps["public"] = module_live_servers(workdir=workdir / "public", **env, PUBLIC_URL=urls["host"] + "/")
    devices = {}
    for key, server in apps.items():
        devices[key] = server.add_device(server.login(), sshd, "px-box")
    public_front = ports["host"][0]  # the "public" app names it in PUBLIC_URL: kept when other ports are picked again

    def write_conf():
        if (workdir / "nginx.conf").exists():
            ports.update({chain: (free_port(), free_port()) for chain in CHAINS})
            ports["host"] = (public_front, ports["host"][1])
            urls.update({chain: f"{'https' if CHAINS[chain][3] else 'http'}://127.0.0.1:{ports[chain][0]}"
                         for chain in CHAINS})
        (workdir / "nginx.conf").write_text(NGINX_CONF.format(dir=workdir, servers=nginx_servers(workdir, ports, apps)))

    proc, _ = start_nginx(workdir, write_conf)
    for front, inner in ports.values():
        wait_for_port(front, proc=proc)
        wait_for_port(inner, proc=proc)
    yield SimpleNamespace(apps=apps, urls=urls, devices=devices, ports=ports)
    proc.terminate()
    proc.wait(10)


def browser_page(browser, tls=False):
    """Return a page in a fresh context (a throw-away certificate is accepted for the TLS front hop)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, ignore_https_errors=tls)
    page = context.new_page()
    return page


def open_device(page, url):
    """Log in at url and open the device's terminal tab; return its panel."""
    browser_login(page, SimpleNamespace(url=url))
    page.locator('button.open-terminal[data-device-name="px-box"]').first.click()  # also under Recent once used
    return page.locator(".terminal-panel").last


def foreign_site(html):
    """Serve one page from another origin on loopback (another port of the same host: same site, other origin)."""
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            """Answer every path with the page."""
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html.encode())

        def log_message(self, *args):
            """Keep the test output quiet."""
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def warnings_about(server, origin):
    """Return the server's WARNING lines about a refused Origin."""
    return [line for line in server.log_text().splitlines() if " WARNING " in line and repr(origin) in line]


@pytest.mark.parametrize("chain", ["http_host", "host", "tls"])
def test_browser_behind_two_proxies_opens_a_terminal(proxied, browser, chain):
    """$http_host needs no setting, $host needs PUBLIC_URL, a TLS front hop's one X-Forwarded-Proto counts."""
    page = browser_page(browser, tls=CHAINS[chain][3])
    try:
        panel = open_device(page, proxied.urls[chain])
        panel.locator(".xterm-rows").get_by_text(re.compile(r"gatehouse-test@.*\$")).first.wait_for()
        page.keyboard.type("echo proxied-$((6*7))")
        page.keyboard.press("Enter")
        panel.locator(".xterm-rows").get_by_text("proxied-42").wait_for()
        if chain == "tls":
            assert page.evaluate("location.origin") == proxied.urls["tls"]
            cookies = page.context.cookies()
            assert all(c["secure"] for c in cookies if c["name"] == "gatehouse_session")
    finally:
        page.context.close()


def test_unconfigured_host_variant_says_why_and_names_public_url(proxied, browser):
    """Host $host drops the port and PUBLIC_URL is unset: the tab says it was refused for its origin."""
    url, server = proxied.urls["host_unconfigured"], proxied.apps["plain"]
    page = browser_page(browser)
    try:
        panel = open_device(page, url)
        panel.locator(".xterm-rows").get_by_text("PUBLIC_URL").first.wait_for()
        text = panel.locator(".xterm-rows").inner_text()
        assert url in text and "refused" in text
        page.locator(".tab-status", has_text="refused").wait_for()
    finally:
        page.context.close()
    lines = warnings_about(server, url)
    assert lines and "'http://127.0.0.1'" in lines[-1] and "PUBLIC_URL" in lines[-1]


def test_page_on_another_origin_cannot_open_a_terminal(proxied, browser):
    """A foreign page in a logged-in browser gets 403; the refusal is logged with both origins."""
    url, server = proxied.urls["http_host"], proxied.apps["plain"]
    page = browser_page(browser)
    try:
        browser_login(page, SimpleNamespace(url=url))
        ws = f"ws://127.0.0.1:{proxied.ports['http_host'][0]}/terminals/{proxied.devices['plain']}/ws"
        script = (f"<script>const s = new WebSocket({ws!r}); s.onopen = () => document.title = 'opened';"
                  "s.onclose = () => { if (document.title !== 'opened') document.title = 'refused'; };</script>")
        foreign = foreign_site(script)
        page.goto(foreign + "/hijack")
        page.wait_for_function("document.title !== ''")
        assert page.title() == "refused"
    finally:
        page.context.close()
    lines = warnings_about(server, foreign)
    assert lines and repr(url) in lines[-1]


@pytest.mark.parametrize("origin", ["http://evil.example", "null", ""])
def test_other_origins_refused_through_the_proxies(proxied, origin):
    server = proxied.apps["plain"]
    proxied_server = LiveServer(server.workdir, port=proxied.ports["http_host"][0])  # the app seen through nginx
    http = proxied_server.login()
    with pytest.raises(simple_websocket.ConnectionError, match="403"):
        connect_terminal(f"ws://127.0.0.1:{proxied_server.port}/terminals/{proxied.devices['plain']}/ws", http, origin)
    assert warnings_about(server, origin)


def test_log_lines_are_utc_whatever_tz_says(proxied):
    """The server runs under TZ=America/New_York; its own lines still carry UTC with Z and milliseconds."""
    server = proxied.apps["plain"]
    assert "America/New_York" == server.environment()["TZ"]
    before = datetime.datetime.now(datetime.timezone.utc)
    http = server.login()
    http.post(server.url + "/logout", data={"csrf_token": server.csrf(http)}, timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "auth.logout" not in server.log_text():
        time.sleep(0.1)
    lines = [line for line in server.log_text().splitlines() if "] gatehouse" in line]
    assert lines
    assert all(LOG_LINE.match(line) for line in lines), [line for line in lines if not LOG_LINE.match(line)][:3]
    newest = datetime.datetime.fromisoformat(LOG_LINE.match(lines[-1]).group(1).replace("Z", "+00:00"))
    assert abs((newest - before).total_seconds()) < 30
    served = [line for line in server.log_text().splitlines() if "] [INFO] " in line]  # gunicorn's own lines
    gunicorn_line = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[\d+\] ")
    assert served and all(gunicorn_line.match(line) for line in served), served[:3]


# --- public_origin() with header chains ---------------------------------------------------------------

@pytest.fixture
def origin_of(tmp_path):
    """Return a function: the public origin the app sees for a request with these headers and settings."""

    def origin_of(headers, hops=2, public_url=None, host="127.0.0.1:8000", scheme="http"):
        """Build the app with these settings and ask it for the public origin of one request."""
        app = make_app(tmp_path / f"o{hops}-{len(os.listdir(tmp_path))}", TRUSTED_PROXY_HOPS=hops,
                       PUBLIC_URL=public_url)
        app.add_url_rule("/_origin", "origin", lambda: public_origin() or "none")
        response = app.test_client().get("/_origin", headers=headers, base_url=f"{scheme}://{host}")
        return response.get_data(as_text=True)

    return origin_of


@pytest.mark.parametrize("hops,headers,host,expected", [
    (0, {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}, "127.0.0.1:8000",
     "http://127.0.0.1:8000"),  # no trusted proxy: the headers are the client's and ignored
    (1, {"X-Forwarded-Proto": "https"}, "gatehouse.example.org:8443", "https://gatehouse.example.org:8443"),
    (1, {"X-Forwarded-Proto": "https"}, "Gatehouse.Example.org:443", "https://gatehouse.example.org"),
    (1, {"X-Forwarded-Proto": "http"}, "127.0.0.1:80", "http://127.0.0.1"),
    (2, {"X-Forwarded-Proto": "https"}, "127.0.0.1:8443", "https://127.0.0.1:8443"),  # only the TLS front hop
    (2, {"X-Forwarded-Proto": "https, http"}, "127.0.0.1:8443", "https://127.0.0.1:8443"),  # each hop appends
    (2, {"X-Forwarded-Port": "8443"}, "127.0.0.1", "http://127.0.0.1:8443"),  # Host $host + front's port
    (2, {"X-Forwarded-Host": "gatehouse.example.org:8443", "X-Forwarded-Proto": "https"}, "127.0.0.1:8000",
     "https://gatehouse.example.org:8443"),
    (3, {"X-Forwarded-Proto": "http, https"}, "127.0.0.1:8443", "https://127.0.0.1:8443"),  # nearest of two
    # Spoofed by the client: values it sent sit left of what the trusted hops wrote, and are not taken.
    (1, {"X-Forwarded-Proto": "https, https, http"}, "127.0.0.1:8080", "http://127.0.0.1:8080"),
    (1, {"X-Forwarded-Host": "evil.example, 127.0.0.1:8080"}, "127.0.0.1:8080", "http://127.0.0.1:8080"),
    (2, {"X-Forwarded-Host": "evil.example, a.example:1, b.example:2"}, "x", "http://a.example:1"),
    (1, {"X-Forwarded-Proto": "javascript"}, "127.0.0.1:8080", "none"),  # nonsense never matches an Origin
    (1, {"X-Forwarded-Port": "abc"}, "127.0.0.1:8080", "none"),
])
def test_public_origin_from_header_chains(origin_of, hops, headers, host, expected):
    assert origin_of(headers, hops=hops, host=host) == expected


def test_public_url_wins_over_every_header(origin_of):
    headers = {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example", "X-Forwarded-Port": "1"}
    assert origin_of(headers, public_url="HTTPS://Gatehouse.example.org:443/") == "https://gatehouse.example.org"


@pytest.mark.parametrize("sent,ok", [
    ("https://gatehouse.example.org", True), ("https://gatehouse.example.org:443", True),
    ("https://GATEHOUSE.example.org/", True), ("http://gatehouse.example.org", False),
    ("https://gatehouse.example.org:8443", False), ("https://gatehouse.example.org.evil.example", False),
    ("null", False), ("", False),
])
def test_websocket_origin_check_compares_origins(tmp_path, caplog, sent, ok):
    app = make_app(tmp_path, PUBLIC_URL="https://gatehouse.example.org")
    with app.test_request_context("/", headers={"Origin": sent}):
        if ok:
            check_websocket_origin()
        else:
            with pytest.raises(Exception) as refused:
                check_websocket_origin()
            assert getattr(refused.value, "code", None) == 403
            warning = [r for r in caplog.records if r.levelname == "WARNING" and r.name == "gatehouse.origins"]
            assert warning and repr(sent) in warning[-1].getMessage()
            assert "'https://gatehouse.example.org'" in warning[-1].getMessage()
            assert "PUBLIC_URL" in warning[-1].getMessage()


@pytest.mark.parametrize("value", ["gatehouse.example.org", "ftp://gatehouse.example.org", "https://",
                                   "https://gatehouse.example.org/gatehouse", "https://user@gatehouse.example.org",
                                   "https://gatehouse.example.org:99999", "https://gate house.example.org",
                                   "https://gatehouse.example.org/?x=1"])
def test_public_url_nonsense_fails_fast_naming_the_variable(monkeypatch, value):
    from config import Config, ConfigError

    monkeypatch.setenv("PUBLIC_URL", value)
    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        Config()
