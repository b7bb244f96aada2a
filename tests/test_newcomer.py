"""What a newcomer sees on the first `make run` and its Ctrl-C: a quiet migration, a clean stop, private files."""
import os
import signal
import stat
import subprocess
import sys
import time

from tests.support import ROOT, SECRET_KEY, free_port, make_app


def test_sqlite_file_and_its_folder_are_created_private(tmp_path):
    folder = tmp_path / "fresh"
    previous = os.umask(0o022)  # the usual umask would leave the file world-readable
    try:
        make_app(tmp_path, SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder / 'gatehouse.db'}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():  # the database and SQLite's -wal and -shm beside it
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_first_migration_does_not_tell_to_run_itself(tmp_path):
    env = {**os.environ, "GATEHOUSE_INSTANCE": str(tmp_path), "SECRET_KEY": SECRET_KEY,
           "DATABASE_URL": f"sqlite:///{tmp_path / 'first.db'}"}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "no schema yet" not in done.stdout + done.stderr


def test_ctrl_c_stops_without_a_traceback(live_servers):
    """Ctrl-C signals the whole process group: the master and the worker each get SIGINT."""
    for attempt in range(3):  # the traceback came from a race; give it a few chances to show
        server = live_servers()
        os.killpg(server.proc.pid, signal.SIGINT)
        server.proc.wait(timeout=30)
        server.log.close()
        log = server.log_text()
        assert "Traceback" not in log and "SystemExit" not in log, log[-3000:]
        assert "Shutting down: Master" in log


def test_worker_that_fails_to_boot_exits_without_a_hook_error(tmp_path):
    env = {**os.environ, "GATEHOUSE_INSTANCE": str(tmp_path), "SECRET_KEY": SECRET_KEY, "LOG_LEVEL": "loud",
           "GATEHOUSE_BIND": f"127.0.0.1:{free_port()}"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "LOG_LEVEL='loud'" in done.stderr
    assert "AttributeError" not in done.stderr and "worker_exit" not in done.stderr, done.stderr[-2000:]
    assert time.monotonic() - started < 60
