"""The test suite's own tools: run-owned worker databases, the closing line of a run that skipped real parts,
a test service that cannot start shows why."""
import os
import re
import socket
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from tests.oidc import OIDCProvider
from tests.support import ROOT, SUITE_PG_URL, worker_database, worker_database_name


def _databases(url):
    """Return the names of the databases on the server of url, or None when no server answers."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(sa.text("SELECT datname FROM pg_database")))
    except sa.exc.OperationalError:
        return None
    finally:
        engine.dispose()


def test_worker_database_names_belong_to_their_run():
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    assert worker_database_name("test", "gw0", first) != worker_database_name("test", "gw0", second)
    assert worker_database_name("test", "gw0", first) != worker_database_name("test", "gw1", first)
    assert worker_database_name("test", "gw0", first) == f"test_gw0_{first[:8]}"
    long_name = worker_database_name("x" * 63, "gw12", first)
    assert len(long_name) == 63 and long_name.endswith(f"_gw12_{first[:8]}")  # PostgreSQL's limit on names


def test_a_run_drops_its_own_worker_database_and_no_other_runs():
    suite = sa.make_url(SUITE_PG_URL)
    if _databases(SUITE_PG_URL) is None:
        pytest.skip("no PostgreSQL server answers (tests/test_migrations.py says so in CI)")
    other = suite.set(database=worker_database_name(suite.database, "gw0", uuid.uuid4().hex))
    ours = suite.set(database=worker_database_name(suite.database, "gw0", uuid.uuid4().hex))
    assert worker_database(create=True, url=other.render_as_string(hide_password=False))
    try:
        assert worker_database(create=True, url=ours.render_as_string(hide_password=False))
        assert {other.database, ours.database} <= _databases(SUITE_PG_URL)
        assert worker_database(create=False, url=ours.render_as_string(hide_password=False))
        names = _databases(SUITE_PG_URL)
        assert ours.database not in names and other.database in names
    finally:
        worker_database(create=False, url=other.render_as_string(hide_password=False))


TINY_SUITE = '''
from tests.support import PG_URL, missing

def test_needs_nginx():
    missing("nginx (apt-get install nginx)")

def test_needs_nothing():
    print(PG_URL)
'''


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Run a two-test suite with this suite's conftest twice at the same time on one PostgreSQL; their outputs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CI"))}  # outside CI: skips
    env.update(PYTHONPATH=str(ROOT), GATEHOUSE_TEST_PG=SUITE_PG_URL)
    runs = []
    for _ in range(2):
        folder = tmp_path_factory.mktemp("run")
        (folder / "test_tiny.py").write_text(TINY_SUITE)
        runs.append(subprocess.Popen([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-n", "1", "-ra", "-rP",
                                      "--color=no", "-p", "no:cacheprovider", "test_tiny.py"],
                                     cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [run.communicate(timeout=180)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-3000:]
    return outputs


def test_the_incomplete_run_line_is_the_last_line_and_names_the_package(two_runs):
    lines = [line for line in two_runs[0].splitlines() if line.strip()]
    assert "1 passed, 1 skipped" in "\n".join(lines[-4:])  # pytest's own counts come before it
    assert lines[-1] == ("INCOMPLETE RUN: tests were skipped for lack of nginx (apt-get install nginx) "
                         "(as root, `bash .ci/run` installs everything)"), lines[-5:]


def test_two_runs_at_once_use_their_own_worker_databases_and_leave_none(two_runs):
    seen = [name for output in two_runs
            for name in re.findall(r"^postgresql\S+/(\S+_gw0_[0-9a-f]{8})$", output, re.MULTILINE)]
    assert len(seen) == 2 and seen[0] != seen[1], seen
    names = _databases(SUITE_PG_URL)
    assert names is None or not set(seen) & names  # each run dropped its own at the end


def test_every_missing_part_names_how_to_get_it():
    """Each real part a test may lack names its Debian package (or that it needs root), for the closing line."""
    calls = []
    for path in [*ROOT.joinpath("tests").glob("*.py"), ROOT / "tests" / "oidc" / "__init__.py"]:
        calls += [(path.name, text) for text in re.findall(r'\bmissing\(f?"([^"]*)', path.read_text())]
    assert len(calls) >= 8, calls
    unnamed = [call for call in calls if not re.search(r"\((apt-get install [\w. -]+|root)[;)]|make test", call[1])]
    assert not unnamed, unnamed


def test_a_provider_that_dies_early_shows_its_own_last_log_lines(tmp_path):
    with socket.socket() as taken:  # bound, not listening: connections are refused, node's listen fails
        taken.bind(("127.0.0.1", 0))
        provider = OIDCProvider(tmp_path / "op", port=taken.getsockname()[1])
        with pytest.raises(RuntimeError) as failure:
            provider.start()
        provider.stop()
    message = str(failure.value)
    assert "exited with" in message and "provider.log" in message
    assert "EADDRINUSE" in message, message  # node's own words, not only that it exited



def test_a_test_server_that_never_answers_is_stopped_not_left_running(tmp_path, monkeypatch):
    """A start that gives up stops its gunicorn: a busy machine's timeouts must not leave servers behind."""
    from tests.support import LiveServer

    def never(_self):
        raise RuntimeError("nothing answered")

    monkeypatch.setattr(LiveServer, "_wait_until_serving", never)
    server = LiveServer(tmp_path)
    with pytest.raises(RuntimeError):
        server.start()
    assert server.proc.poll() is not None
