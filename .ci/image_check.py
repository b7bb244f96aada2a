"""Check a running Gatehouse container (started by .ci/image): it serves the log-in page and /healthz, created the
first admin once with a password that logs in, runs as a user that is not root, and after a restart of the
container still has its admin (the volume kept the database) and created no second one.

    python3 .ci/image_check.py CONTAINER PORT
"""
import http.cookiejar
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

PODMAN = ["podman", "--runtime", "runc"]
CREATED = re.compile(r"admin user 'admin' created with password: (\S+)")


def podman(*args):
    return subprocess.run(PODMAN + list(args), capture_output=True, text=True, timeout=120)


def wait_until_serving(base, container, seconds=240):
    """Wait for the log-in page; fail with the container's log when it never comes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/login", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    sys.exit(f"the container did not serve /login within {seconds} s:\n{podman('logs', container).stdout[-3000:]}")


def log_in(base, password):
    """Log in as admin through the real form; return where the server sent the browser."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(base + "/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page)
    form = urllib.parse.urlencode({"csrf_token": token.group(1), "username": "admin", "password": password}).encode()
    try:
        return opener.open(urllib.request.Request(base + "/login", data=form), timeout=10).url
    except urllib.error.HTTPError as refused:  # 401: the log-in page again
        return refused.url


def admins_created(container):
    logs = podman("logs", container)
    return CREATED.findall(logs.stdout + logs.stderr)


def main(container, port):
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base, container)
    with urllib.request.urlopen(base + "/healthz", timeout=5) as answer:
        assert answer.read() == b"ok\n", "/healthz"
    uid = podman("exec", container, "id", "-u").stdout.strip()
    assert uid and uid != "0", f"the container runs as uid {uid!r}"
    health = podman("healthcheck", "run", container)
    assert health.returncode == 0, f"the image's HEALTHCHECK failed: {health.stdout}{health.stderr}"
    passwords = admins_created(container)
    assert len(passwords) == 1, f"expected one first admin, the log shows {len(passwords)}"
    assert "/login" not in log_in(base, passwords[0]), "the first admin's password did not log in"
    print(f"image: serving on 127.0.0.1:{port} as uid {uid}, healthcheck passes, first admin created and logs in")

    assert podman("restart", container).returncode == 0, "podman restart"
    wait_until_serving(base, container)
    assert len(admins_created(container)) == 1, "a second first admin was created after the restart"
    assert "/login" not in log_in(base, passwords[0]), "after the restart the admin's password no longer logs in"
    print("image: after a restart the database is kept (the same admin logs in) and no second admin was created")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
