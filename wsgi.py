"""WSGI entry point for gunicorn: `gunicorn -c gunicorn.conf.py wsgi:app`."""
import sys

# paramiko imports invoke only to run the `Match exec` lines of an ssh_config, and Gatehouse reads none: leaving it
# out spares each worker about 4 MiB.
sys.modules.setdefault("invoke", None)

from app import create_app  # noqa: E402

app = create_app(migrations=False)  # `flask db` runs from the console, never in a worker
