"""Test helpers: the app on a fresh database, log-in actions, a private OpenSSH sshd, the app under gunicorn."""
import atexit
import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import flask_migrate
import pytest
import requests
import sqlalchemy as sa
from sqlalchemy import select

from app import create_app
from app.auth.accounts import create_user
from app.audit.models import AuditEvent
from app.auth.admin import ensure_first_admin
from app.extensions import db

ROOT = Path(__file__).resolve().parent.parent
# The suite's own PostgreSQL database; under pytest-xdist each worker has its own beside it, made and dropped
# by conftest.py, since tests empty the database they use. Its name carries the run's id (test_gw0_3f9c2a1b),
# so two runs on one server never use, nor drop, each other's.
SUITE_PG_URL = os.environ.get("GATEHOUSE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")


def worker_database_name(suite, worker, run_id):
    """Return the name of a worker's own database: the suite's, the worker and the run (63 bytes at most)."""
    suffix = f"_{worker}_{run_id[:8]}" if run_id else f"_{worker}"
    return suite[:63 - len(suffix)] + suffix


# Every test process works in a database of its own, a run without xdist too ("solo" and its pid): the suite's
# database is only where they connect to create theirs, so a module run beside a whole suite leaves it alone.
PG_URL = sa.make_url(SUITE_PG_URL).set(database=worker_database_name(
    sa.make_url(SUITE_PG_URL).database, WORKER or "solo", RUN_ID or str(os.getpid()))).render_as_string(False)
IN_CI = os.environ.get("CI", "").lower() == "true"
SSHD = "/usr/sbin/sshd"
CHROMIUM = "/usr/bin/chromium"
ADMIN_PASSWORD = "admin-password-for-tests"
SECRET_KEY = "test-secret-key-" + "k" * 32
TEST_USER = "gatehouse-test"
# The one ceiling for every wait on a condition (a page element, an event in the trail, a port, output on a socket).
# A wait ends as soon as its condition holds, so a long ceiling costs nothing when all is well, while a short one
# fails on a busy machine: two cores under several suites stretch one second into ten.
WAIT_SECONDS = 30


def missing(what):
    """Skip on a developer's machine that lacks a real part; fail in CI, where it must be there."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available on this machine")


def need_ssh_keygen():
    """Skip (fail in CI) a test that needs ssh-keygen when openssh-client is not installed."""
    if shutil.which("ssh-keygen") is None:
        missing("ssh-keygen (apt-get install openssh-client)")


def free_port():
    """Return a TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path, lines=25):
    """Return the last lines of a process's log file, indented, for an error message."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as error:
        return f"  (no log: {error})"
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or "  (the log is empty)"


def wait_for_port(port, timeout=WAIT_SECONDS, proc=None, log=None):
    """Wait until something accepts on 127.0.0.1:port; a failure shows the end of the process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            problem = f"process exited with {proc.returncode} before listening on {port}"
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    else:
        problem = f"nothing listens on 127.0.0.1:{port} after {timeout}s"
    if log is not None:  # the cause is in the process's own words; the path alone sends people digging
        problem += f"; the end of its log ({log}):\n{log_tail(log)}"
    raise RuntimeError(problem)


def csrf_from(html):
    """Return the CSRF token of a rendered page."""
    match = re.search(r'name="csrf-token" content="([^"]+)"', html) or re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', html
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


_SCHEMA = {}  # the one empty SQLite database at head that this process copies for every fresh app and server


def migrate(url, instance_dir):
    """Migrate the database at url to head in this process (a `flask db upgrade` process would import everything)."""
    app = create_app({"SECRET_KEY": SECRET_KEY, "SQLALCHEMY_DATABASE_URI": url, "INSTANCE_DIR": str(instance_dir)})
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


def fresh_sqlite(path):
    """Put an empty SQLite database at head at path, unless one is there; return whether it was put there.

    Migrating a new file runs every migration (a third of a second of CPU); a copy of one file migrated once per
    process is the same database, made by the same migrations, for a millisecond."""
    path = Path(path)
    if path.exists():
        return False
    if "path" not in _SCHEMA:
        folder = Path(tempfile.mkdtemp(prefix="gatehouse-schema-"))
        atexit.register(shutil.rmtree, folder, True)
        migrate(f"sqlite:///{folder / 'schema.db'}", folder)
        _SCHEMA["path"] = folder / "schema.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(_SCHEMA["path"], path)
    return True


def make_app(tmp_path, database_url=None, **overrides):
    """Create the app on a fresh database, migrated to head, with the first admin."""
    config = {
        "TESTING": True, "SECRET_KEY": SECRET_KEY, "INSTANCE_DIR": str(tmp_path),
        "SQLALCHEMY_DATABASE_URI": database_url or f"sqlite:///{tmp_path / 'test.db'}",
        "ADMIN_USER": "admin", "ADMIN_PASSWORD": ADMIN_PASSWORD, "RECORDINGS_DIR": str(tmp_path / "recordings"),
        "REQUIRE_2FA": "off",  # most tests log in with a password alone; tests/test_totp.py sets it
        "PORT_CHECK_SECONDS": "0",  # test devices name hosts that must never be dialled; test_device_finding.py sets it
    }
    config.update(overrides)
    default = config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'test.db'}"
    copied = default and fresh_sqlite(tmp_path / "test.db")
    app = create_app(config)
    with app.app_context():
        if not copied:
            flask_migrate.upgrade()
        ensure_first_admin(app)
    return app


def worker_database(create, url=PG_URL):
    """Create (or drop) this xdist worker's own database, from the suite's; False when no server answers."""
    name = sa.make_url(url).database
    engine = sa.create_engine(SUITE_PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if create:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def no_postgres():
    """Skip (or, in CI, fail) a test whose PostgreSQL server does not answer, saying how to get one."""
    suite = sa.make_url(SUITE_PG_URL)
    missing(f"PostgreSQL on {suite.host or '127.0.0.1'}:{suite.port or 5432} (apt-get install postgresql; "
            f"trust auth, database {suite.database})")


_PG_HEAD = {}  # url of this process's PostgreSQL database migrated to head once, copied for every fresh app


def fresh_postgres(url=PG_URL):
    """Put an empty database at head at url and return url: a copy (CREATE DATABASE … TEMPLATE) of one this process
    migrated once, as fresh_sqlite does for SQLite: running every migration on PostgreSQL costs seconds a test."""
    target = sa.make_url(url)
    head = target.set(database=target.database[:58] + "_head")
    engine = sa.create_engine(SUITE_PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if "url" not in _PG_HEAD:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{head.database}" WITH (FORCE)'))
                conn.execute(sa.text(f'CREATE DATABASE "{head.database}"'))
                folder = Path(tempfile.mkdtemp(prefix="gatehouse-pg-head-"))
                atexit.register(shutil.rmtree, folder, True)
                migrate(head.render_as_string(hide_password=False), folder)
                _PG_HEAD["url"] = head
                atexit.register(_drop_database, head.database)
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{target.database}" TEMPLATE "{head.database}"'))
    except sa.exc.OperationalError:
        no_postgres()
    finally:
        engine.dispose()
    return url


def _drop_database(name):
    """Drop a database of this run (at exit), if the server still answers."""
    engine = sa.create_engine(SUITE_PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except sa.exc.OperationalError:
        pass
    finally:
        engine.dispose()


def reset_postgres(url=PG_URL):
    """Empty the test database on PostgreSQL, or skip/fail when no server answers."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    except sa.exc.OperationalError:
        no_postgres()
    finally:
        engine.dispose()
    return url


class AuthActions:
    """Log in and out through the real forms, CSRF token included."""

    def __init__(self, client):
        self._client = client

    def csrf(self, path="/login"):
        return csrf_from(self._client.get(path).get_data(as_text=True))

    def login(self, username="admin", password=ADMIN_PASSWORD, **kwargs):
        token = self.csrf("/login")
        return self._client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                                 **kwargs)

    def logout(self):
        token = self.csrf("/")
        return self._client.post("/logout", data={"csrf_token": token})


def logged_in_user(app, username, password="user-password-long", admin=False):
    """Create a user by the account rule and return a test client logged in as them."""
    with app.app_context():
        create_user(username, password, admin=admin, via="console")
    client = app.test_client()
    assert AuthActions(client).login(username, password).status_code == 302
    return client


def browser_login(page, server, username="admin", password=ADMIN_PASSWORD):
    """Log in through the real page."""
    page.goto(server.url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(server.url) + "/$"))


@dataclass
class SSHServer:
    """A private sshd on 127.0.0.1 with a throw-away host key, config and user."""

    workdir: Path
    port: int = 0
    user: str = TEST_USER
    password: str = ""
    key_path: Path | None = None
    host_key_type: str = "ed25519"
    proc: subprocess.Popen | None = None
    extra: dict = field(default_factory=dict)

    host = "127.0.0.1"

    @property
    def key_text(self):
        return self.key_path.read_text()

    @property
    def home(self):
        return Path(pwd.getpwnam(self.user).pw_dir)

    def start(self):
        """Create the user, keys and config if needed, and start sshd in the foreground."""
        if not os.path.exists(SSHD) or os.geteuid() != 0:
            missing("OpenSSH sshd (apt-get install openssh-server; run as root)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.password = self.password or ensure_test_user(self.user)
        if self.key_path is None:
            self.key_path = self.workdir / "client_ed25519"
            if not self.key_path.exists():
                _keygen("ed25519", self.key_path)
            authorize_key(self.user, (self.workdir / "client_ed25519.pub").read_text())
        host_key = self.workdir / f"host_{self.host_key_type}"
        if not host_key.exists():
            _keygen(self.host_key_type, host_key)
        self.port = self.port or free_port()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        lines = {
            "Port": self.port, "ListenAddress": "127.0.0.1", "HostKey": host_key,
            "PidFile": self.workdir / "sshd.pid", "UsePAM": "no", "PasswordAuthentication": "yes",
            "KbdInteractiveAuthentication": "no", "PubkeyAuthentication": "yes",
            "AuthorizedKeysFile": ".ssh/authorized_keys", "AllowUsers": self.user, "PermitRootLogin": "no",
            "MaxStartups": "1000:100:1000", "MaxSessions": "100", "MaxAuthTries": "3", "LoginGraceTime": "30",
            "LogLevel": "ERROR", "PrintMotd": "no", "Banner": "none", "UseDNS": "no", "PerSourcePenalties": "no",
        }
        lines.update(self.extra)
        config = self.workdir / "sshd_config"
        config.write_text("".join(f"{k} {v}\n" for k, v in lines.items()))
        if subprocess.run([SSHD, "-t", "-f", config], capture_output=True).returncode != 0:
            lines.pop("PerSourcePenalties")  # older OpenSSH does not know it (and does not penalise)
            config.write_text("".join(f"{k} {v}\n" for k, v in lines.items()))
            check = subprocess.run([SSHD, "-t", "-f", config], capture_output=True, text=True)
            assert check.returncode == 0, check.stderr
        self.log = open(self.workdir / "sshd.log", "ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=self.log, stderr=self.log)
        wait_for_port(self.port, proc=self.proc, log=self.workdir / "sshd.log")
        return self

    def fingerprint(self):
        """Return the SHA256 fingerprint of the host key, as ssh-keygen prints it."""
        need_ssh_keygen()
        out = subprocess.run(["ssh-keygen", "-lf", self.workdir / f"host_{self.host_key_type}.pub"],
                             capture_output=True, text=True, check=True).stdout
        return out.split()[1]

    def stop(self):
        """Stop sshd (its sessions' children are ended with it)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()


def _keygen(kind, path):
    """Create a key pair without a passphrase."""
    need_ssh_keygen()
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "gatehouse-test", "-f", str(path)], check=True)


def ensure_test_user(user):
    """Create the throw-away login user once; return its password (kept root-only, reused by parallel runs)."""
    secret_file = Path.home() / ".cache" / f"{user}.password"
    try:
        pwd.getpwnam(user)
        if secret_file.exists():
            return secret_file.read_text().strip()
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", user], check=True)
    password = "pw-" + secrets.token_urlsafe(12)
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    secret_file.touch(mode=0o600)
    secret_file.write_text(password)
    subprocess.run(["chpasswd"], input=f"{user}:{password}", text=True, check=True)
    return password


def authorize_key(user, public_line):
    """Put a public key into the user's authorized_keys (0700/0600, owned by the user)."""
    entry = pwd.getpwnam(user)
    ssh_dir = Path(entry.pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    existing = keys.read_text() if keys.exists() else ""
    if public_line.strip() not in existing:
        keys.write_text(existing + public_line.strip() + "\n")
    for path in (ssh_dir, keys):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    ssh_dir.chmod(0o700)
    keys.chmod(0o600)


@dataclass
class LiveServer:
    """The app served by gunicorn's gevent worker, as `make run` serves it, on a free port."""

    workdir: Path
    env: dict = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}"

    @property
    def database_url(self):
        return self.env.get("DATABASE_URL") or f"sqlite:///{self.workdir / 'live.db'}"

    def environment(self):
        """Return the process environment the server runs with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEHOUSE_", "AUDIT_", "SSH_", "WS_", "RECORDING"))}
        env.update({
            "DATABASE_URL": self.database_url, "SECRET_KEY": SECRET_KEY, "ADMIN_USER": "admin",
            "ADMIN_PASSWORD": ADMIN_PASSWORD, "GATEHOUSE_INSTANCE": str(self.workdir),
            "GATEHOUSE_BIND": f"127.0.0.1:{self.port}", "GATEHOUSE_ACCESS_LOG": "",
            "SESSION_HEARTBEAT_SECONDS": "1", "SSH_CONNECT_TIMEOUT": "3",
            # A ping unanswered for one interval closes the socket, and simple_websocket checks for the pong
            # before it reads what waits: a test process stalled that long on a loaded machine would lose its
            # terminal. The tests of missed pings ask for 2 s.
            "WS_PING_SECONDS": "5",
            "GATEHOUSE_GRACEFUL_TIMEOUT": "3", "AUDIT_POLL_SECONDS": "2",
            "LOGIN_MAX_FAILURES_PER_IP": "0",  # every test comes from 127.0.0.1; tests/test_throttle.py turns it on
            "REQUIRE_2FA": "off",  # most tests log in with a password alone; tests/test_totp.py sets it
            "PORT_CHECK_SECONDS": "0",  # test devices name hosts that must never be dialled
        })
        env.update({k: str(v) for k, v in self.env.items()})
        return env

    def start(self):
        """Migrate the database and start gunicorn; wait until it answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        env = self.environment()
        default = self.database_url == f"sqlite:///{self.workdir / 'live.db'}"
        if not (default and fresh_sqlite(self.workdir / "live.db")):
            migrate(self.database_url, self.workdir)  # as `flask db upgrade` before gunicorn, without its start-up
        self.log_path = self.workdir / "server.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=self.log, start_new_session=True)
        try:  # a server that never answers is stopped here: its test fails and nothing is left running
            self._wait_until_serving()
        except BaseException:
            self.stop(signal.SIGKILL)
            raise
        return self

    def _wait_until_serving(self):
        """Wait for the port, then for the first page (the worker's imports come first)."""
        wait_for_port(self.port, proc=self.proc, log=self.log_path)
        deadline = time.monotonic() + 2 * WAIT_SECONDS
        # The port answers as soon as gunicorn's master binds it; the worker's first answer waits for its imports,
        # which took 12 s on a machine with a load of 14 (2 cores), longer with two workers: no short read limit.
        while requests.get(self.url + "/login", timeout=2 * WAIT_SECONDS).status_code != 200:
            assert time.monotonic() < deadline, self.log_text()[-2000:]
            time.sleep(0.1)

    def stop(self, sig=signal.SIGTERM):
        """Stop gunicorn (SIGTERM: graceful; SIGKILL: a crash); stopping a stopped server does nothing."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=WAIT_SECONDS)
        if getattr(self, "log", None):
            self.log.close()

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def login(self, username="admin", password=ADMIN_PASSWORD, headers=None):
        """Return a requests session logged in as username."""
        http = requests.Session()
        http.headers.update(headers or {})
        page = http.get(self.url + "/login", timeout=10)
        response = http.post(self.url + "/login", data={"username": username, "password": password,
                                                       "csrf_token": csrf_from(page.text)},
                             allow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text[:500]
        return http

    def csrf(self, http):
        """Return a CSRF token for a logged-in requests session."""
        return csrf_from(http.get(self.url + "/", timeout=10).text)

    def add_device(self, http, sshd, name, auth="password", **fields):
        """Create a device through the real form; return its id."""
        data = {"name": name, "host": sshd.host, "port": sshd.port, "username": sshd.user, "auth_type": auth,
                "csrf_token": self.csrf(http)}
        if auth == "password":
            data["password"] = sshd.password
        elif auth == "key":
            data["private_key"] = sshd.key_text
        data.update(fields)
        response = http.post(self.url + "/devices/", data=data, timeout=30)
        assert response.status_code == 200 and f"Device {name} added." in response.text, response.text[:1000]
        return self.device_id(name)

    def device_id(self, name):
        """Return the id the app gave the newest device of this name, from the server's database."""
        from app.devices.models import Device

        with server_app(self).app_context():
            found = db.session.scalar(select(Device.id).filter_by(name=name).order_by(Device.id.desc()).limit(1))
            db.engine.dispose()
        assert found is not None, f"no device {name!r} in {self.database_url}"
        return found


class LiveServers:
    """Start app servers under gunicorn, and stop every one of them when the test (or module) is over."""

    def __init__(self, folder):
        self.folder, self.started = Path(folder), []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop_all()

    def start(self, workdir=None, port=0, **settings):
        """Start a server with these settings (environment variables) and return it once it answers; workdir holds
        its instance folder and SQLite database (a new folder unless given: a restart passes the old one)."""
        workdir = Path(workdir) if workdir else self.folder / f"server-{len(self.started) + 1}"
        server = LiveServer(workdir, env=settings, port=port)
        self.started.append(server)
        return server.start()

    def stop_all(self):
        """Stop every server started here that still runs: a failed test leaves none behind."""
        errors = []
        for server in reversed(self.started):
            try:
                server.stop()
            except Exception as error:  # the others are stopped all the same
                errors.append(error)
        if errors:
            raise errors[0]


# A private nginx in the foreground: format with dir= (its folder) and servers= (server blocks).
def start_nginx(workdir, write_conf, attempts=3):
    """Start nginx on the nginx.conf that write_conf() writes into workdir; return (process, what write_conf returned).

    write_conf picks free ports, but a port picked free can be taken by another process before nginx binds it: nginx
    then retries for 2.5 s and exits, while its other ports (and the taker's) answer. The pid file, which nginx writes
    only once every socket is bound, says it started; otherwise write_conf is asked again for new ports.
    """
    nginx, workdir = shutil.which("nginx") or "/usr/sbin/nginx", Path(workdir)
    pid = workdir / "nginx.pid"
    for _ in range(attempts):
        pid.unlink(missing_ok=True)
        picked = write_conf()
        proc = subprocess.Popen([nginx, "-p", str(workdir), "-c", str(workdir / "nginx.conf")],
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT_SECONDS
        while proc.poll() is None and not pid.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None and pid.exists():
            return proc, picked
        proc.kill()
        proc.wait(10)
    raise RuntimeError(f"nginx did not start in {attempts} tries; the end of its log:\n{log_tail(workdir / 'error.log')}")


NGINX_CONF = """
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
{servers}
}}
"""


class _BoundSockets:
    """Stands in for the socket module inside simple_websocket: connects from a chosen address."""

    def __init__(self, address):
        import socket as real

        self._real, self.address = real, address
        self.SOCK_STREAM, self.getaddrinfo = real.SOCK_STREAM, real.getaddrinfo

    def socket(self, *args):
        sock = self._real.socket(*args)
        sock.bind((self.address, 0))
        return sock


def _client_class():
    """Return a websocket client that sends Host with its port, as browsers do (the Origin check compares), and keeps
    frames that arrive with the handshake."""
    import simple_websocket

    class Client(simple_websocket.Client):
        def handshake(self):
            self.host = f"{self.host}:{self.port}"
            super().handshake()
            # Frames read together with the handshake's answer wait inside wsproto until more data comes; when the
            # server answers, refuses and closes at once, none comes and the library would drop them: take them now.
            # A close among them is left to the reading thread, which then meets the end of the stream.
            self._handle_events()
            self.connected = True

    return Client


def connect_terminal(ws_url, http, origin):
    """Open the terminal websocket with the session cookie of a requests session."""
    cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
    headers = {"Cookie": cookie, "Origin": origin, "User-Agent": http.headers.get("User-Agent", "")}
    return _client_class()(ws_url, headers=headers)


def open_terminal(ws_url, http, origin, monkeypatch=None, source=None):
    """Open the terminal websocket with the session cookie of http; wait for the shell to answer."""
    import simple_websocket

    if source:
        monkeypatch.setattr(simple_websocket.ws, "socket", _BoundSockets(source))
    ws = connect_terminal(ws_url, http, origin)
    ws.send(b"echo ready-$((6*7))\n")
    read_until(ws, b"ready-42")
    return ws


def session_of(ws, timeout=WAIT_SECONDS):
    """Read a terminal websocket's frames until its "connected" message; return the session id it names."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = ws.receive(timeout=0.5)
        if isinstance(frame, str) and json.loads(frame).get("type") == "connected":
            return json.loads(frame)["session"]
    raise AssertionError(f"the terminal did not connect within {timeout} s")


def wait_for(check, timeout=WAIT_SECONDS):
    """Poll check() until it returns something true; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout} s")


_SERVER_APPS = {}  # (database URL, instance folder): an app that reads a live server's database


def server_app(server):
    """Return an app on a live server's database and instance folder, made once: a wait polls it ten times a
    second, and making an app each time took 40 ms of CPU from the server it waited for."""
    key = (server.database_url, str(server.workdir))
    if key not in _SERVER_APPS:
        _SERVER_APPS[key] = create_app({"SECRET_KEY": SECRET_KEY, "SQLALCHEMY_DATABASE_URI": server.database_url,
                                        "INSTANCE_DIR": str(server.workdir)})
    return _SERVER_APPS[key]


def live_events(server, action):
    """Return the events of one action in a live server's trail, oldest first."""
    app = server_app(server)
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        db.engine.dispose()
    return rows


@contextlib.contextmanager
def environment(values):
    """Run the block with exactly these environment variables, then put the old ones back."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def console(server, *args):
    """Run a `flask` console command (`users create ...`) with a live server's settings and database; return what
    it printed. The same command runs in this process: a `flask` process would import the whole app first."""
    with environment(server.environment()):
        app = create_app()
        result = app.test_cli_runner().invoke(args=list(args))
    with app.app_context():
        db.engine.dispose()
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"  # the console's own words
    return result.output


def new_user(server, password="user-password-long"):
    """Create a user through the console on a live server; return its name and password."""
    name = "u-" + secrets.token_hex(4)
    console(server, "users", "create", name, "--password", password, "--no-must-change")
    return name, password


def read_until(ws, marker, timeout=WAIT_SECONDS):
    """Collect output frames until marker shows up; a failure shows the output's end and the server's messages."""
    from simple_websocket import ConnectionClosed

    seen, said = b"", []
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        try:
            frame = ws.receive(timeout=0.5)
        except ConnectionClosed as closed:
            raise AssertionError(f"socket closed ({closed}) before {marker!r}: {seen[-300:]!r}, said {said}") from None
        if isinstance(frame, bytes):
            seen += frame
        elif frame is not None:
            said.append(frame[:200])
    assert marker in seen, (seen[-500:], said)
    return seen


def closed_within(ws, timeout):
    """Return the seconds until a terminal socket says its session closed (or the socket closes)."""
    from simple_websocket import ConnectionClosed

    began = time.monotonic()
    try:
        while time.monotonic() - began < timeout:
            frame = ws.receive(timeout=0.05)
            if isinstance(frame, str) and json.loads(frame).get("type") == "closed":
                return time.monotonic() - began
    except ConnectionClosed:
        return time.monotonic() - began
    raise AssertionError(f"the session did not close within {timeout} s")


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connect from a chosen loopback address (the client's address as a proxy or the app sees it)."""

    def __init__(self, address):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def open_user_session(server, sshd, prefix):
    """Open a new user's terminal to a new device named prefix + the user's name; return (its socket, its session id)."""
    name, password = new_user(server)
    http = server.login(name, password)
    device = server.add_device(http, sshd, prefix + name)
    ws = connect_terminal(f"{server.ws_url}/terminals/{device}/ws", http, server.url)
    return ws, session_of(ws)
