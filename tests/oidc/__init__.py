"""The test OpenID Provider: tests/oidc/provider.mjs (npm oidc-provider, installed by `make test`) on 127.0.0.1."""
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import requests

from tests.support import free_port, missing, wait_for_port

HERE = Path(__file__).resolve().parent
# The people of provider.mjs: username -> (password, subject).
PEOPLE = {"alice": ("alice-password", "sub-alice-7f3a"), "bob": ("bob-password", "sub-bob-91c2"),
          "eve": ("eve-password", "sub-eve-3d5e")}
CLIENT_ID, CLIENT_SECRET = "gatehouse", "gatehouse-test-client-secret"
OTHER_CLIENT_ID = "other-app"  # a second client: the "audience" tamper mode makes our ID token its
ADMIN_GROUP = "gatehouse-admins"


def gatehouse_settings(provider, **more):
    """Return Gatehouse's settings for this provider: the README's fixture example, with the issuer filled in."""
    settings = {
        "OIDC_ISSUER": provider.issuer, "OIDC_CLIENT_ID": CLIENT_ID, "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_DISPLAY_NAME": "Test provider", "OIDC_SCOPES": "openid profile email groups",
        "OIDC_AUTO_CREATE": "on", "OIDC_ADMIN_GROUP": ADMIN_GROUP,
    }
    settings.update(more)
    return settings


@dataclass
class OIDCProvider:
    """oidc-provider on a free loopback port, with Gatehouse's client registered for the given origins."""

    workdir: Path
    origins: list = field(default_factory=list)  # Gatehouse origins: /login/oidc/callback and /login are registered
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def issuer(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        """Write the provider's config, start node and wait until it listens."""
        if shutil.which("node") is None:
            missing("Node.js (apt-get install nodejs npm)")
        if not (HERE / "node_modules" / "oidc-provider").is_dir():
            missing("tests/oidc/node_modules (`make test` installs it: npm ci --prefix tests/oidc)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        clients = [
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
             "redirect_uris": [origin + "/login/oidc/callback" for origin in self.origins],
             "post_logout_redirect_uris": [origin + "/login" for origin in self.origins]},
            {"client_id": OTHER_CLIENT_ID, "client_secret": "other-app-secret",
             "redirect_uris": ["http://127.0.0.1:9/callback"]},
        ]
        config = self.workdir / "provider.json"
        config.write_text(json.dumps({"port": self.port, "clients": clients}))
        log = self.workdir / "provider.log"
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(["node", str(HERE / "provider.mjs"), str(config)], cwd=HERE,
                                     stdout=self.log, stderr=self.log)
        wait_for_port(self.port, timeout=30, proc=self.proc, log=log)
        return self

    def stop(self):
        """Stop the provider."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()

    def tamper(self, mode):
        """Make the next token response's ID token wrong in one way: expired, audience, issuer or signature."""
        response = requests.post(self.issuer + "/__test/tamper", json={"mode": mode}, timeout=10)
        response.raise_for_status()

    def sign_in(self, http, url, username):
        """Follow an authorization request through the provider's log-in form; return where it sends the browser."""
        password = PEOPLE[username][0]
        for _ in range(10):
            response = http.get(url, allow_redirects=False, timeout=10)
            if response.status_code == 200 and 'name="login"' in response.text:
                response = http.post(url, data={"login": username, "password": password}, allow_redirects=False,
                                     timeout=10)
            assert response.status_code in (302, 303), response.text[:500]
            url = urljoin(url, response.headers["Location"])
            if not url.startswith(self.issuer + "/"):
                return url
        raise AssertionError("the provider kept redirecting to itself")
