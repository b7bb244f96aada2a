"""An S3-compatible server on loopback for the object-store tests: moto in server mode (`moto_server`), which
speaks S3's HTTP protocol; boto3 reaches it as it would reach AWS, at an explicit endpoint_url.

The fixture `s3server` (session scope: one server per pytest worker, stopped at the end) sets dummy AWS_*
credentials for the run and turns off the instance-metadata lookup, so nothing here ever leaves 127.0.0.1.
"""
import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port, missing, wait_for_port

REGION = "us-east-1"
# What boto3 reads; dummy values (moto checks no signature), and no profile file or instance role is consulted.
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "gatehouse-test-key", "AWS_SECRET_ACCESS_KEY": "gatehouse-test-secret",
             "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
             "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_DEFAULT_REGION": REGION}


@dataclass
class S3Server:
    """A running moto_server: its address, a client, fresh buckets and the settings that point Gatehouse at one."""

    port: int
    proc: subprocess.Popen

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        """Return a boto3 client of this server (the tests' own view of the bucket)."""
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"])

    def bucket(self):
        """Create a new, empty bucket and return its name."""
        name = "gh-test-" + secrets.token_hex(6)
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket, prefix=""):
        """Return the keys in a bucket under a prefix, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))

    def settings(self, bucket, prefix="recordings/"):
        """Return the environment of a Gatehouse server that keeps its recordings in this bucket."""
        return {"RECORDINGS_S3_BUCKET": bucket, "RECORDINGS_S3_PREFIX": prefix, "RECORDINGS_S3_ENDPOINT": self.endpoint,
                "RECORDINGS_S3_REGION": REGION, **DUMMY_AWS}

    def config(self, bucket, prefix="recordings/"):
        """Return the same as app configuration overrides (for an app made in the test process)."""
        return {"RECORDINGS_S3_BUCKET": bucket, "RECORDINGS_S3_PREFIX": prefix, "RECORDINGS_S3_ENDPOINT": self.endpoint,
                "RECORDINGS_S3_REGION": REGION}


def start(folder):
    """Start moto_server on a free loopback port; return it once it answers."""
    program = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if program is None:
        missing("moto_server (in requirements-dev.txt: make test installs it)")
    port = free_port()
    log = Path(folder) / "moto.log"
    env = {**os.environ, **DUMMY_AWS}
    with open(log, "ab") as out:
        proc = subprocess.Popen([program, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out, env=env,
                                start_new_session=True)
    try:
        wait_for_port(port, proc=proc, log=log)
    except BaseException:
        stop(proc)
        raise
    return S3Server(port, proc)


def stop(proc):
    """Stop a moto_server this module started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def s3server(tmp_path_factory):
    """A moto_server on 127.0.0.1 for the whole run, with dummy AWS credentials in this process's environment."""
    saved = {name: os.environ.get(name) for name in DUMMY_AWS}
    os.environ.update(DUMMY_AWS)
    server = start(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        stop(server.proc)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
