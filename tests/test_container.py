"""The container files: compose.yaml resolves with podman-compose (the services, the secrets it insists on) and the
Dockerfile keeps its promises (not root, the instance folder a volume, a health check on /healthz, the base an
ARG). .ci/image builds the image with podman and checks it running: that is the test through the real thing."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import missing

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = [str(Path(sys.executable).parent / "podman-compose"), "-f", str(ROOT / "compose.yaml"), "config"]


def compose_config(**values):
    """Run `podman-compose config` with only these variables set; return (exit code, output)."""
    if not shutil.which("podman"):
        missing("podman (apt-get install podman), which podman-compose asks for its version")
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "SECRET_KEY")} | values
    done = subprocess.run(COMPOSE, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_compose_runs_gatehouse_on_postgresql():
    code, output = compose_config(POSTGRES_PASSWORD="pw-for-the-check", SECRET_KEY="k" * 48)
    assert code == 0, output
    services = yaml.safe_load(output)["services"]
    gatehouse, db = services["gatehouse"], services["db"]
    assert gatehouse["environment"]["DATABASE_URL"] == "postgresql://gatehouse:pw-for-the-check@db:5432/gatehouse"
    assert gatehouse["environment"]["SECRET_KEY"] == "k" * 48
    assert gatehouse["depends_on"]["db"]["condition"] == "service_healthy" and "pg_isready" in db["healthcheck"]["test"]
    assert any(v.endswith(":/var/lib/gatehouse") for v in gatehouse["volumes"])
    assert all(p.startswith("127.0.0.1:") for p in gatehouse["ports"])  # a proxy with TLS goes in front


@pytest.mark.parametrize("unset", ["POSTGRES_PASSWORD", "SECRET_KEY"])
def test_compose_refuses_to_run_without_its_secrets(unset):
    values = {"POSTGRES_PASSWORD": "pw-for-the-check", "SECRET_KEY": "k" * 48}
    del values[unset]
    code, output = compose_config(**values)
    assert code != 0 and f"set {unset} in .env" in output


def test_the_dockerfile_runs_as_a_user_with_its_data_on_a_volume():
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^VOLUME /var/lib/gatehouse$", text, re.M)
    assert re.search(r"^ENV .*GATEHOUSE_INSTANCE=/var/lib/gatehouse", text, re.M | re.S)
    assert re.search(r"^HEALTHCHECK .*/healthz", text, re.M | re.S)
    assert re.search(r"^ARG BASE=python:3\.\d+-slim", text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "instance", ".env"} <= set(ignored)  # no secret or local database goes into the image
