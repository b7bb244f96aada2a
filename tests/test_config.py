"""Settings: documented defaults, nonsense refused with the variable's name, the generated key."""
import os
import stat

import pytest

from app import create_app
from config import Config, ConfigError

DEFAULTS = {
    "ADMIN_USER": "admin", "ADMIN_PASSWORD": None, "ENCRYPTION_KEY": None, "PASSWORD_MIN_LENGTH": 12,
    "LOGIN_MAX_FAILURES": 5, "LOGIN_LOCK_MINUTES": 15, "SESSION_TTL_HOURS": 8, "TRUSTED_PROXY_HOPS": 0,
    "AUDIT_RETENTION_DAYS": 7, "AUDIT_PRUNE_INTERVAL_SECONDS": 3600, "AUDIT_ARCHIVE_DIR": None, "AUDIT_POLL_SECONDS": 5,
    "SSH_CONNECT_TIMEOUT": 10, "SSH_KEEPALIVE_SECONDS": 15, "SSH_WRITE_TIMEOUT": 30, "SESSION_HEARTBEAT_SECONDS": 10,
    "WS_PING_SECONDS": 10, "WS_MAX_MESSAGE_BYTES": 1048576, "LOG_LEVEL": "INFO",
    "RECORDING": "on", "RECORDING_MAX_MB": 100, "RECORDING_RETENTION_DAYS": 7,
}


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in list(DEFAULTS) + ["DATABASE_URL", "SECRET_KEY"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEHOUSE_INSTANCE", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name,default", DEFAULTS.items())
def test_defaults(clean_env, name, default):
    assert getattr(Config(), name) == default


def test_recordings_default_to_the_instance_folder_and_follow_the_audit_retention(clean_env, monkeypatch):
    monkeypatch.delenv("RECORDINGS_DIR", raising=False)
    assert Config().RECORDINGS_DIR == str(clean_env / "recordings")
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "30")
    monkeypatch.setenv("RECORDING", " OFF ")
    assert (Config().RECORDING_RETENTION_DAYS, Config().RECORDING) == (30, "off")


def test_default_database_is_sqlite_in_instance(clean_env):
    assert Config().SQLALCHEMY_DATABASE_URI == f"sqlite:///{clean_env / 'gatehouse.db'}"


@pytest.mark.parametrize("url,expected", [
    ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
])
def test_postgres_urls_use_psycopg3(clean_env, monkeypatch, url, expected):
    monkeypatch.setenv("DATABASE_URL", url)
    assert Config().SQLALCHEMY_DATABASE_URI == expected


@pytest.mark.parametrize("name,value", [
    ("AUDIT_RETENTION_DAYS", "abc"), ("AUDIT_RETENTION_DAYS", "0"), ("TRUSTED_PROXY_HOPS", "-1"),
    ("TRUSTED_PROXY_HOPS", "two"), ("SESSION_TTL_HOURS", "0"), ("PASSWORD_MIN_LENGTH", "4"),
    ("WS_MAX_MESSAGE_BYTES", "10"), ("LOG_LEVEL", "loud"), ("SSH_CONNECT_TIMEOUT", "1e3"),
    ("AUDIT_POLL_SECONDS", "0"), ("RECORDING", "maybe"), ("RECORDING_MAX_MB", "0"),
    ("RECORDING_RETENTION_DAYS", "never"),
])
def test_nonsense_fails_fast_naming_the_variable(clean_env, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        Config()
    assert name in str(error.value) and repr(value).strip("'") in str(error.value)


def test_short_secret_key_refused(clean_env, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "too-short")
    with pytest.raises(ConfigError, match="SECRET_KEY must be at least 32 characters"):
        create_app({"TESTING": True})


def test_generated_secret_key_is_kept_private_and_reused(clean_env):
    first = create_app({"TESTING": True})
    path = clean_env / "secret_key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert first.config["SECRET_KEY"] == path.read_text().strip() and len(first.config["SECRET_KEY"]) >= 48
    second = create_app({"TESTING": True})
    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]


def test_dotenv_file_is_read(tmp_path):
    import subprocess
    import sys

    (tmp_path / ".env").write_text("AUDIT_RETENTION_DAYS=30\n")
    code = ("import config, pathlib, dotenv; dotenv.load_dotenv(pathlib.Path('.env'));"
            "print(config.Config().AUDIT_RETENTION_DAYS)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.stdout.strip() == "30", out.stderr


def test_factory_applies_overrides(tmp_path):
    app = create_app({"TESTING": True, "SECRET_KEY": "k" * 40, "INSTANCE_DIR": str(tmp_path),
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}", "SESSION_TTL_HOURS": 2})
    assert app.config["PERMANENT_SESSION_LIFETIME"].total_seconds() == 7200
    from app.terminals.websocket import InputGate

    assert app.config["SOCK_SERVER_OPTIONS"] == {"ping_interval": 10, "max_message_size": 1048576,
                                                 "event_class": InputGate}
    assert {"auth", "users", "devices", "terminals", "audit"} <= set(app.blueprints)


def test_audit_poll_interval_reaches_the_viewer(tmp_path):
    from tests.support import AuthActions, make_app

    client = make_app(tmp_path, AUDIT_POLL_SECONDS=1).test_client()
    AuthActions(client).login()
    assert 'hx-trigger="every 1s, refresh"' in client.get("/audit/rows").get_data(as_text=True)
